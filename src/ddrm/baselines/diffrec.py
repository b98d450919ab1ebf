"""DiffRec (Wang et al., SIGIR 2023): Gaussian diffusion over each user's interaction vector, MLP denoiser.

Training: for a batch of users with train rows x0 [B, n_items] and uniform t, ``x_t = q_sample(x0, t)``; the MLP
predicts x0 from ``[dropout(x_t), temb(t)]``; loss = mean over users of ``w(t) * ||x0_hat - x0||^2 / n_items`` with
DiffRec's x0 reweighting ``w(t) = SNR(t - 1) - SNR(t)`` (1 at t = 0) when ``reweight``. Inference: start from x0
(noised to step ``noise_steps - 1`` when ``noise_steps > 0``, un-noised otherwise, as DiffRec's sampling_steps=0),
run T reverse posterior-mean steps and rank items by the result. DiffRec's importance sampling of t is not
implemented (t is uniform). Memory is bounded by the user batch: rows are densified per batch only.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import Interactions
from ..denoiser import timestep_embedding
from ..diffusion import GaussianDiffusion, inference_salt, keyed_normal, make_betas
from ..errors import ConfigError
from ..recommender import Recommender
from ..trainable import Sampler, SeededModule

logger = logging.getLogger(__name__)


class _DiffRecMLP(nn.Module):
    """``[x_t, Linear(temb(t))] -> dims[::-1] -> n_items`` with tanh between layers (DiffRec's DNN)."""

    def __init__(self, n_items: int, dims: Sequence[int], emb_size: int, dropout: float, seed: int) -> None:
        super().__init__()
        self.emb_size, self.dropout = emb_size, dropout
        self.emb = nn.Linear(emb_size, emb_size)
        sizes = [n_items + emb_size, *reversed(dims), *dims[1:], n_items]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        g = torch.Generator().manual_seed(seed)
        for m in [self.emb, *self.layers]:
            std = math.sqrt(2.0 / (m.in_features + m.out_features))
            with torch.no_grad():
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.001)

    def forward(self, x: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        x = F.normalize(x, dim=-1)
        if self.training and self.dropout > 0:
            keep = torch.rand(x.shape, generator=generator, device=x.device) >= self.dropout
            x = x * keep.to(x.dtype) / (1.0 - self.dropout)
        h = torch.cat([x, self.emb(timestep_embedding(t, self.emb_size).to(x.dtype))], dim=-1)
        for k, layer in enumerate(self.layers):
            h = layer(h)
            if k < len(self.layers) - 1:
                h = torch.tanh(h)
        return h


class _DiffRecModule(SeededModule):
    """What the training loop trains for :class:`DiffRec`: the MLP, the diffusion, and the loss on a batch of users.

    Its sampler gives each epoch's users (those with training items) in a random order; its generator (seed + 1)
    draws the steps, the forward noise and the dropout masks.
    """

    def __init__(self, owner: DiffRec, data: Interactions) -> None:
        super().__init__(owner.seed + 1)
        self.owner = [owner]  # not a child module
        betas = make_betas("linear-var", owner.steps, owner.noise_scale, owner.noise_min, owner.noise_max)
        self.diffusion = GaussianDiffusion(betas, "x0")
        self.net = _DiffRecMLP(data.n_items, owner.dims, owner.emb_size, owner.dropout, owner.seed)
        abar = self.diffusion.alphas_cumprod
        snr = abar / (1 - abar)
        self.register_buffer("weights", torch.cat([torch.ones(1, dtype=snr.dtype), snr[:-1] - snr[1:]]).float())
        self.steps, self.reweight = owner.steps, owner.reweight

    def sampler(self, data: Interactions) -> Sampler:
        users = np.flatnonzero(np.diff(data.train.indptr) > 0)
        return lambda rng: (rng.permutation(users),)

    def loss(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        """``w(t) ||x0_hat - x0||^2 / n_items`` averaged over the batch's users [B]."""
        x0 = self.owner[0]._rows(users.cpu().numpy())
        g = self.generator
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=g, device=x0.device)
        xt = self.diffusion.q_sample(x0, t, generator=g)
        per_user = (self.net(xt, t, g) - x0).pow(2).mean(1)
        w = self.weights[t] if self.reweight else torch.ones_like(per_user)
        return {"loss": (w * per_user).mean()}

    def scorer(self) -> DiffRec:
        return self.owner[0]


class DiffRec(Recommender):
    """DiffRec with its ML-1M defaults (lr 1e-3, batch 400, dims [200, 600], T = 40, noise 0.005 / 0.005 / 0.01)."""

    name = "diffrec"

    def __init__(self, steps: int = 40, noise_scale: float = 0.005, noise_min: float = 0.005, noise_max: float = 0.01,
                 noise_steps: int = 0, dims: Sequence[int] = (200, 600), emb_size: int = 10, dropout: float = 0.5,
                 reweight: bool = True, lr: float = 1e-3, weight_decay: float = 0.0, batch_size: int = 400,
                 epochs: int = 200, eval_every: int = 5, patience: int = 4, seed: int = 0, quiet: bool = False,
                 max_items: int = 200_000, device: str = "cpu") -> None:
        self.steps, self.noise_scale, self.noise_min, self.noise_max = steps, noise_scale, noise_min, noise_max
        self.noise_steps, self.dims, self.emb_size, self.dropout = noise_steps, tuple(dims), emb_size, dropout
        self.reweight, self.lr, self.weight_decay, self.batch_size = reweight, lr, weight_decay, batch_size
        self.epochs, self.eval_every, self.patience, self.seed, self.quiet = epochs, eval_every, patience, seed, quiet
        self.max_items, self.device = max_items, device

    def _rows(self, users: np.ndarray) -> torch.Tensor:
        return torch.from_numpy((self.seen_[users] > 0).toarray().astype(np.float32)).to(self.device_)

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None,
            state_path: str | os.PathLike[str] | None = None) -> DiffRec:
        """Train with Adam on shuffled user batches in ddrm's training loop (validation every ``eval_every`` epochs
        on recall@20, early stopping, the best state kept; NaN checks, and with ``state_path`` resumable and
        stopped cleanly by SIGINT / SIGTERM).

        ``on_validation(epoch, recall@20)`` is called after every validation but the last (the tuner's pruning hook)."""
        from ..config.training import EvalConfig, TrainConfig
        from ..training import resolve_device, train_loop

        if data.n_items > self.max_items:
            raise ConfigError(f"DiffRec's denoiser is dense in n_items ({data.n_items} > max_items={self.max_items}).")
        if not 0 <= self.noise_steps <= self.steps:
            raise ConfigError(f"noise_steps must be between 0 and steps={self.steps}.")
        self.device_ = resolve_device(self.device)
        self.seen_ = data.train
        self.module_ = _DiffRecModule(self, data).to(self.device_)
        self.diffusion_, self.net_ = self.module_.diffusion, self.module_.net
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                            eval_every=self.eval_every, patience=self.patience, device=str(self.device_))
        self.result_ = train_loop(self.module_, data, train, EvalConfig(ks=(20,), metric="recall@20"), self.seed,
                                  self.quiet, desc="diffrec", device=self.device_, on_validation=on_validation,
                                  state_path=state_path)
        self.history_ = self.result_.history
        self.best_valid_ = self.result_.best_score
        return self

    def fitted_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        from ..training import TrainResult, resolve_device

        self.device_ = resolve_device(device)
        self.seen_ = data.train
        self.module_ = _DiffRecModule(self, data)
        try:
            self.module_.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"saved DiffRec weights do not fit its parameters and the data "
                              f"({str(exc).splitlines()[0]}).") from None
        self.module_ = self.module_.to(self.device_).train(False)
        self.diffusion_, self.net_ = self.module_.diffusion, self.module_.net
        self.result_ = TrainResult()

    @torch.no_grad()
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Reverse diffusion from each user's train row: [B, n_items]."""
        self._check_fitted()
        x = self._rows(users.cpu().numpy())
        d = self.diffusion_
        if self.noise_steps > 0:  # noise keyed per user: a user's scores do not depend on the batch
            noise = keyed_normal(users.to(x.device), x.shape[1], inference_salt(self.seed), x.dtype)
            x = d.q_sample(x, torch.full((x.shape[0],), self.noise_steps - 1, device=x.device), noise=noise)
        coefs = d.scalar_coefficients()
        for step in range(self.steps - 1, -1, -1):
            t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
            x = d.step_at(self.net_(x, t), x, step, coefs=coefs)
        return x
