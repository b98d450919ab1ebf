"""DiffRec (Wang et al., SIGIR 2023): Gaussian diffusion over each user's interaction vector, MLP denoiser.

Training: for a batch of users with train rows x0 [B, n_items] and uniform t, ``x_t = q_sample(x0, t)``; the MLP
predicts x0 from ``[dropout(x_t), temb(t)]``; loss = mean over users of ``w(t) * ||x0_hat - x0||^2 / n_items`` with
DiffRec's x0 reweighting ``w(t) = SNR(t - 1) - SNR(t)`` (1 at t = 0) when ``reweight``. Inference: start from x0
(noised to step ``noise_steps - 1`` when ``noise_steps > 0``, un-noised otherwise, as DiffRec's sampling_steps=0),
run T reverse posterior-mean steps and rank items by the result. DiffRec's importance sampling of t is not
implemented (t is uniform). Training, saving and fold-in are those of every user-row model (``user_rows``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import Interactions
from ..denoiser import timestep_embedding
from ..diffusion import GaussianDiffusion, inference_salt, keyed_normal, make_betas
from ..errors import ConfigError
from .user_rows import RowModule, RowRecommender


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


class _DiffRecModule(RowModule):
    """What the training loop trains for :class:`DiffRec`: the MLP, the diffusion, and the loss on a batch of users.

    Its generator draws the steps, the forward noise and the dropout masks.
    """

    def __init__(self, owner: DiffRec, data: Interactions) -> None:
        super().__init__(owner)
        betas = make_betas("linear-var", owner.steps, owner.noise_scale, owner.noise_min, owner.noise_max)
        self.diffusion = GaussianDiffusion(betas, "x0")
        self.net = _DiffRecMLP(data.n_items, owner.dims, owner.emb_size, owner.dropout, owner.seed)
        abar = self.diffusion.alphas_cumprod
        snr = abar / (1 - abar)
        self.register_buffer("weights", torch.cat([torch.ones(1, dtype=snr.dtype), snr[:-1] - snr[1:]]).float())
        self.steps, self.reweight = owner.steps, owner.reweight

    def loss(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        """``w(t) ||x0_hat - x0||^2 / n_items`` averaged over the batch's users [B]."""
        x0 = self.rows(users)
        g = self.generator
        t = torch.randint(0, self.steps, (x0.shape[0],), generator=g, device=x0.device)
        xt = self.diffusion.q_sample(x0, t, generator=g)
        per_user = (self.net(xt, t, g) - x0).pow(2).mean(1)
        w = self.weights[t] if self.reweight else torch.ones_like(per_user)
        return {"loss": (w * per_user).mean()}


class DiffRec(RowRecommender):
    """DiffRec with its ML-1M defaults (lr 1e-3, batch 400, dims [200, 600], T = 40, noise 0.005 / 0.005 / 0.01)."""

    name, label = "diffrec", "DiffRec"

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

    def _check_params(self, data: Interactions) -> None:
        super()._check_params(data)
        if not 0 <= self.noise_steps <= self.steps:
            raise ConfigError(f"noise_steps must be between 0 and steps={self.steps}.")

    def _module(self, data: Interactions) -> _DiffRecModule:
        return _DiffRecModule(self, data)

    @property
    def diffusion_(self) -> GaussianDiffusion:
        """The fitted diffusion schedule."""
        return self.module_.diffusion

    def _score_rows(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Reverse diffusion from the rows ``x`` [B, n_items] (noised to step ``noise_steps - 1`` first, keyed by
        ``keys``, when ``noise_steps > 0``)."""
        d, net = self.module_.diffusion, self.module_.net
        if self.noise_steps > 0:  # noise keyed per user: a user's scores do not depend on the batch
            noise = keyed_normal(keys, x.shape[1], inference_salt(self.seed), x.dtype)
            x = d.q_sample(x, torch.full((x.shape[0],), self.noise_steps - 1, device=x.device), noise=noise)
        coefs = d.scalar_coefficients()
        for step in range(self.steps - 1, -1, -1):
            t = torch.full((x.shape[0],), step, device=x.device, dtype=torch.long)
            x = d.step_at(net(x, t), x, step, coefs=coefs)
        return x
