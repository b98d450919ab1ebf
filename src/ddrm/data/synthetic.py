"""The built-in default data: seeded latent-factor preferences with planted, labelled noise."""

from __future__ import annotations

import numpy as np

from ..config.data import SyntheticConfig
from .interactions import Interactions, build_csr
from .preprocess import inject_noise


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
