"""The conditional denoiser: sinusoidal timestep embedding + an MLP on [noisy embedding, time, condition]."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .errors import ConfigError

Activation = Literal["tanh", "sigmoid", "relu"]
_ACT = {"tanh": nn.Tanh, "sigmoid": nn.Sigmoid, "relu": nn.ReLU}
_ACT_INPLACE = {"tanh": torch.tanh_, "sigmoid": torch.sigmoid_, "relu": torch.relu_}  # applied to fresh outputs only


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding [B, dim] of timesteps [B]: ``[cos(t f_k), sin(t f_k)]``, ``f_k = max_period^(-k/half)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
    return emb


class MLPDenoiser(nn.Module):
    """``f(x_t, c, t) -> x0_hat``: input ``[dropout(x_t), Linear(temb(t)), c]``, then a mirrored MLP.

    ``dims = (100, 1000)`` with embedding size d gives ``(2d + time_dim) -> 1000 -> 100 -> 1000 -> d``; the
    activation follows every layer but the last. Xavier-normal weights, N(0, 0.001) biases (as the reference).

    ``steps``: the number of diffusion steps (every t < steps), sizing the time table of the first layer; None
    derives it from each batch's largest t. ``cond_dim``: the condition's width (default d).

    Shapes: x_t [B, d], cond [B, cond_dim], t int64 [B] -> [B, d].
    """

    def __init__(self, emb_dim: int, dims: Sequence[int] = (100, 1000), time_dim: int = 10,
                 activation: Activation = "sigmoid", dropout: float = 0.5,
                 generator: torch.Generator | None = None, steps: int | None = None,
                 cond_dim: int | None = None) -> None:
        super().__init__()
        if activation not in _ACT:
            raise ConfigError(f"unknown activation {activation!r}; use tanh, sigmoid or relu.")
        if not dims or min(dims) < 1 or time_dim < 1 or not 0 <= dropout < 1:
            raise ConfigError("denoiser needs non-empty positive dims, time_dim >= 1 and 0 <= dropout < 1.")
        self.time_dim = time_dim
        self.steps = steps
        self.emb_dim = emb_dim
        self.dropout = dropout
        self.act_ = _ACT_INPLACE[activation]
        self.time_layer = nn.Linear(time_dim, time_dim)
        sizes = [emb_dim + (emb_dim if cond_dim is None else cond_dim) + time_dim, *reversed(dims), *dims[1:], emb_dim]
        layers: list[nn.Module] = []
        for k, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
            layers.append(nn.Linear(a, b))
            if k < len(sizes) - 2:
                layers.append(_ACT[activation]())
        self.mlp = nn.Sequential(*layers)
        g = generator or torch.Generator().manual_seed(0)
        for m in [self.time_layer, *self.mlp]:
            if isinstance(m, nn.Linear):
                std = math.sqrt(2.0 / (m.in_features + m.out_features))
                with torch.no_grad():
                    m.weight.copy_(torch.randn(m.weight.shape, generator=g) * std)
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.001)

    def forward(self, x_t: torch.Tensor, cond: torch.Tensor, t: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """x0 estimate [B, d]; input dropout (training mode only) draws from ``generator`` when given."""
        if self.training and self.dropout > 0:
            keep = torch.rand(x_t.shape, generator=generator, device=x_t.device) >= self.dropout
            x_t = x_t * keep.to(x_t.dtype) / (1.0 - self.dropout)
        # The first layer on [x_t, temb, cond], split: the time share is a table over the steps (the time layer's
        # gradient flows through it), gathered per row and accumulated in place by one GEMM on [x_t, cond], which
        # carry no gradient for a frozen backend. Same maths as one Linear on the concatenation.
        wx, wt, wc, b = self._split_first()
        n_steps = self.steps if self.steps is not None else int(t.max()) + 1
        steps = torch.arange(n_steps, device=t.device)
        table = F.linear(self.time_layer(timestep_embedding(steps, self.time_dim).to(x_t.dtype)), wt, b)
        h = F.embedding(t, table)  # [B, h]: W_t Linear(temb(t)) + b
        xc = torch.cat([x_t, cond], dim=-1).to(h.dtype)
        h = h.addmm_(xc, torch.cat([wx, wc], dim=1).t().to(h.dtype))
        for m in self.mlp[1:]:
            h = m(h) if isinstance(m, nn.Linear) else self.act_(h)  # Linear saves its input, not its output
        return h

    # ------------------------------------------------------------------ inference fast path
    # The first layer acts on [x_t, temb, cond]; split its weight so the condition's share is computed once per
    # generation and the time's share once per step, instead of re-concatenating per step (same maths).
    # Cached views / time parts are dropped whenever the weights may change (train mode, loading, moving).
    def train(self, mode: bool = True):
        self._cache = {}
        return super().train(mode)

    def _apply(self, fn, recurse=True):
        self._cache = {}
        return super()._apply(fn, recurse)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        self._cache = {}
        return super().load_state_dict(state, strict=strict, assign=assign)

    def _split_first(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The first layer's weight split by input [x_t | temb | cond] (views, [h, d], [h, time_dim], [h, d]) and
        its bias [h]."""
        first, d, td = self.mlp[0], self.emb_dim, self.time_dim
        w = first.weight
        return w[:, :d], w[:, d:d + td], w[:, d + td:], first.bias

    def _parts(self) -> dict:
        cache = self.__dict__.setdefault("_cache", {})
        if "first" not in cache:
            cache["first"] = self._split_first()
            cache["rest"] = [(m.weight, m.bias) for m in self.mlp if isinstance(m, nn.Linear)][1:]
        return cache

    def condition_part(self, cond: torch.Tensor) -> torch.Tensor:
        """``W_c cond + b`` of the first layer [B, h], shared by every reverse step."""
        _, _, wc, b = self._parts()["first"]
        return F.linear(cond, wc, b)

    def time_part(self, step: int, like: torch.Tensor) -> torch.Tensor:
        """``W_t Linear(temb(step))`` of the first layer [1, h] (cached per step outside training)."""
        cache = self._parts()
        key = ("time", step, like.dtype, like.device, torch.is_autocast_enabled(like.device.type))
        if key not in cache or self.training:
            _, wt, _, _ = cache["first"]
            t = torch.full((1,), step, dtype=torch.long, device=like.device)
            cache[key] = F.linear(self.time_layer(timestep_embedding(t, self.time_dim).to(like.dtype)), wt)
        return cache[key]

    def forward_prepared(self, x_t: torch.Tensor, cond_part: torch.Tensor, time_part: torch.Tensor) -> torch.Tensor:
        """Eval-mode forward from precomputed condition / time parts: equals ``forward(x_t, cond, t)``."""
        cache = self._parts()
        h = F.linear(x_t, cache["first"][0]) + cond_part + time_part
        for w, b in cache["rest"]:
            h = F.linear(self.act_(h), w, b)
        return h

