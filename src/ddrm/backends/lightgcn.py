"""LightGCN (He et al., SIGIR 2020): ego embeddings propagated over the normalised user-item graph
(``graph.propagate``, the mean of the layers), trained with BPR on the propagated embeddings."""

from __future__ import annotations

from ..config.backbones import LightGCNConfig
from .registry import Backbone

BACKBONE = Backbone("lightgcn", LightGCNConfig)
