"""SGL-ED (Wu et al., SIGIR 2021): LightGCN plus an InfoNCE loss between two edge-dropout views of the graph,
redrawn every epoch."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from ..config.backbones import SGLConfig
from .base import EmbeddingBackend
from .graph import normalized_adjacency
from .registry import Backbone


class SGLModule(EmbeddingBackend):
    """``EmbeddingBackend`` + SGL-ED's contrastive term over two graph views drawn at every epoch start."""

    shared_attrs: ClassVar[tuple[str, ...]] = ("adj", "_train", "views")
    cfg: SGLConfig

    def __init__(self, train, cfg: SGLConfig, generator: torch.Generator | None = None) -> None:
        super().__init__(train, cfg, generator)
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None

    def on_epoch_start(self, epoch: int, rng: np.random.Generator) -> None:
        """Draw two edge-dropout views of the graph for this epoch."""
        if self.cfg.ssl_weight > 0:
            dev = self.user.device
            keep = [rng.random(self._train.nnz) >= self.cfg.ssl_ratio for _ in range(2)]
            self.views = tuple(normalized_adjacency(self._train, k).to(dev) for k in keep)  # type: ignore[assignment]

    def extra_terms(self, users: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """``ssl``: InfoNCE between the two views, over the batch's unique users and unique positive items."""
        if self.cfg.ssl_weight <= 0:
            return {}
        if self.views is None:
            self.on_epoch_start(0, np.random.default_rng(0))
        assert self.views is not None
        u1, i1 = self.propagated(self.views[0])
        u2, i2 = self.propagated(self.views[1])
        uu, ii = torch.unique(users), torch.unique(pos)
        t = self.cfg.ssl_temperature
        return {"ssl": self.cfg.ssl_weight * (info_nce(u1[uu], u2[uu], t) + info_nce(i1[ii], i2[ii], t))}


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between two views [N, d]: row k of ``a`` should match row k of ``b`` among all rows of ``b``."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device), reduction="sum") / a.shape[0]


BACKBONE = Backbone("sgl", SGLConfig, SGLModule)
