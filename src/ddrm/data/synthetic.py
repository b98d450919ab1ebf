"""The built-in default data: seeded latent-factor preferences with planted, labelled noise."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from .interactions import Interactions, build_csr
from .preprocess import inject_noise


@dataclass
class SyntheticConfig:
    """Size and shape of the synthetic dataset.

    Users and items get latent vectors of size ``dim``; a user's clean interactions are drawn without replacement
    with probability proportional to ``exp(temperature * <u, v> / sqrt(dim) + popularity bias)``, split per user
    into train / valid / test by ``ratios``. Then ``noise_ratio * nnz(train)`` uniformly random pairs are planted
    into train with label ``noise = 1`` so denoising can be measured against ground truth.
    """

    n_users: int = 1000
    n_items: int = 600
    dim: int = 8
    mean_items: float = 40.0
    temperature: float = 4.0
    popularity: float = 1.0
    noise_ratio: float = 0.2
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0

    def validate(self) -> None:
        if self.n_users < 2 or self.n_items < 10 or self.dim < 1:
            raise ConfigError("synthetic data needs n_users >= 2, n_items >= 10 and dim >= 1.")
        if not 3 <= self.mean_items <= self.n_items / 2:
            raise ConfigError(f"synthetic mean_items must be in [3, n_items / 2], got {self.mean_items}.")
        r = np.asarray(self.ratios, dtype=float)
        if r.shape != (3,) or (r <= 0).any() or abs(r.sum() - 1) > 1e-6:
            raise ConfigError(f"synthetic ratios must be three positive fractions summing to 1, got {self.ratios}.")


def make_synthetic(cfg: SyntheticConfig | None = None) -> Interactions:
    """Generate the synthetic dataset; identical for identical configs (seeded)."""
    cfg = cfg or SyntheticConfig()
    cfg.validate()
    rng = np.random.default_rng(cfg.seed)
    u = rng.standard_normal((cfg.n_users, cfg.dim))
    v = rng.standard_normal((cfg.n_items, cfg.dim))
    bias = cfg.popularity * rng.standard_normal(cfg.n_items)
    counts = np.clip(rng.poisson(cfg.mean_items, cfg.n_users), 5, cfg.n_items // 2)
    users, items, parts = [], [], []
    chunk = max(1, 2**22 // cfg.n_items)  # bound the dense block to ~4M cells
    cut = np.cumsum(cfg.ratios)[:2]
    for lo in range(0, cfg.n_users, chunk):  # chunks of users, vectorised inside
        hi = min(lo + chunk, cfg.n_users)
        logits = cfg.temperature * (u[lo:hi] @ v.T) / np.sqrt(cfg.dim) + bias
        keys = logits + rng.gumbel(size=logits.shape)  # Gumbel top-k = sampling without replacement
        order = np.argsort(-keys, axis=1)
        n = counts[lo:hi]
        take = np.arange(cfg.n_items)[None, :] < n[:, None]
        rows = np.broadcast_to(np.arange(lo, hi)[:, None], order.shape)[take]
        cols = order[take]
        pos = rng.random(rows.size)  # a random position per interaction decides its split
        users.append(rows)
        items.append(cols)
        parts.append(np.searchsorted(cut, pos, side="right"))
    uu, ii, pp = np.concatenate(users), np.concatenate(items), np.concatenate(parts)
    shape = (cfg.n_users, cfg.n_items)
    mats = [build_csr(uu[pp == k], ii[pp == k], shape)[0] for k in range(3)]
    data = Interactions(mats[0], mats[1], mats[2], name="synthetic")
    return inject_noise(data, cfg.noise_ratio, seed=cfg.seed + 1)
