"""Mult-VAE (Liang et al., "Variational Autoencoders for Collaborative Filtering", WWW 2018).

A user's binary train row x [n_items] is L2-normalised, passed through dropout, and encoded by an MLP (tanh) into a
Gaussian q(z | x) = N(mu, diag(exp(logvar))) over a ``latent``-dimensional z; the decoder MLP maps z to logits over
all items, and the likelihood is multinomial: ``log p(x | z) = sum_i x_i log softmax(logits)_i``. The loss on a batch
is the negative ELBO with an annealed KL weight,

    mean over users of  -sum_i x_i log softmax(f(z))_i  +  beta * KL(q(z | x) || N(0, I)),
    KL = 1/2 sum_j (exp(logvar_j) + mu_j^2 - 1 - logvar_j),    beta = min(anneal_cap, step / anneal_steps),

with z = mu + exp(logvar / 2) * eps during training (the reparameterisation) and z = mu when scoring (no dropout):
a user's scores are the logits ``f(mu(x))`` [n_items]. The defaults are the paper's: one hidden layer of 600,
latent 200, dropout 0.5, beta annealed to 0.2 over 200,000 updates, Adam at 1e-3, batches of 500 users. Training,
saving and fold-in are those of every user-row model (:mod:`ddrm.baselines.user_rows`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import Interactions
from ..errors import ConfigError
from .user_rows import RowModule, RowRecommender


def _mlp(sizes: Sequence[int], generator: torch.Generator) -> nn.ModuleList:
    """Linear layers ``sizes[0] -> sizes[1] -> ...``: Glorot-uniform weights, biases N(0, 0.001^2), as in the paper's
    code."""
    layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:], strict=True))
    for m in layers:
        bound = math.sqrt(6.0 / (m.in_features + m.out_features))
        with torch.no_grad():
            m.weight.copy_((torch.rand(m.weight.shape, generator=generator) * 2 - 1) * bound)
            m.bias.copy_(torch.randn(m.bias.shape, generator=generator) * 0.001)
    return layers


def _run(layers: nn.ModuleList, h: torch.Tensor) -> torch.Tensor:
    """The layers with tanh between them (none after the last)."""
    for k, layer in enumerate(layers):
        h = layer(h)
        if k < len(layers) - 1:
            h = torch.tanh(h)
    return h


def kl_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, diag(exp(logvar))) || N(0, I)) per row: [B] from ``mu``, ``logvar`` [B, latent]."""
    return 0.5 * (logvar.exp() + mu.pow(2) - 1.0 - logvar).sum(1)


class _MultVAEModule(RowModule):
    """The encoder and decoder of :class:`MultVAE`, and the annealed negative ELBO on a batch of users. Its
    generator draws the dropout masks and the reparameterisation noise."""

    def __init__(self, owner: MultVAE, data: Interactions) -> None:
        super().__init__(owner)
        g = torch.Generator().manual_seed(owner.seed)
        hidden = list(owner.dims)
        self.encoder = _mlp([data.n_items, *hidden, 2 * owner.latent], g)
        self.decoder = _mlp([owner.latent, *reversed(hidden), data.n_items], g)
        self.latent, self.dropout = owner.latent, owner.dropout
        self.anneal_cap, self.anneal_steps = owner.anneal_cap, owner.anneal_steps
        self.beta = owner.anneal_cap if owner.anneal_steps == 0 else 0.0

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(mu, logvar)`` [B, latent] of binary rows ``x`` [B, n_items] (dropout on the input when training)."""
        x = F.normalize(x, dim=-1)
        if self.training and self.dropout > 0:
            keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.dropout
            x = x * keep.to(x.dtype) / (1.0 - self.dropout)
        h = _run(self.encoder, x)
        return h[:, :self.latent], h[:, self.latent:]

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Logits [B, n_items] of latent codes ``z`` [B, latent]."""
        return _run(self.decoder, z)

    def on_step(self, step: int) -> None:
        if self.anneal_steps > 0:
            self.beta = min(self.anneal_cap, step / self.anneal_steps)

    def loss(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        """The negative ELBO with KL weight ``beta``, averaged over the batch's users [B]."""
        x = self.rows(users)
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=self.generator, device=mu.device, dtype=mu.dtype)
        z = mu + torch.exp(0.5 * logvar) * eps
        nll = -(F.log_softmax(self.decode(z), dim=1) * x).sum(1).mean()
        kl = kl_standard_normal(mu, logvar).mean()
        return {"loss": nll + self.beta * kl, "nll": nll, "kl": kl}


class MultVAE(RowRecommender):
    """Mult-VAE with the paper's defaults (hidden [600], latent 200, dropout 0.5, beta annealed to 0.2 over 200,000
    updates, lr 1e-3, batches of 500 users); validation every ``eval_every`` epochs with early stopping, as DiffRec."""

    name, label = "multvae", "Mult-VAE"

    def __init__(self, dims: Sequence[int] = (600,), latent: int = 200, dropout: float = 0.5,
                 anneal_cap: float = 0.2, anneal_steps: int = 200_000, lr: float = 1e-3, weight_decay: float = 0.0,
                 batch_size: int = 500, epochs: int = 200, eval_every: int = 5, patience: int = 4, seed: int = 0,
                 quiet: bool = False, max_items: int = 200_000, device: str = "cpu") -> None:
        self.dims, self.latent, self.dropout = tuple(dims), latent, dropout
        self.anneal_cap, self.anneal_steps = anneal_cap, anneal_steps
        self.lr, self.weight_decay, self.batch_size = lr, weight_decay, batch_size
        self.epochs, self.eval_every, self.patience, self.seed, self.quiet = epochs, eval_every, patience, seed, quiet
        self.max_items, self.device = max_items, device

    def _check_params(self, data: Interactions) -> None:
        super()._check_params(data)
        if self.latent < 1 or any(int(d) < 1 for d in self.dims):
            raise ConfigError(f"Mult-VAE's latent and dims must be positive (latent={self.latent}, "
                              f"dims={list(self.dims)}).")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"Mult-VAE's dropout must be in [0, 1) (got {self.dropout}).")
        if self.anneal_cap < 0 or self.anneal_steps < 0:
            raise ConfigError(f"Mult-VAE's anneal_cap and anneal_steps must be >= 0 (got {self.anneal_cap}, "
                              f"{self.anneal_steps}).")

    def _module(self, data: Interactions) -> _MultVAEModule:
        return _MultVAEModule(self, data)

    def _score_rows(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """The decoder's logits at the posterior mean, ``f(mu(x))`` [B, n_items] (deterministic: ``keys`` unused)."""
        module = self.module_
        return module.decode(module.encode(x)[0])
