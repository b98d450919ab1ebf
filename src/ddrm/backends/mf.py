"""Matrix factorisation: user and item embeddings scored by their dot product, trained with BPR (Rendle et al.,
2009). The module is the shared ``EmbeddingBackend`` without propagation."""

from __future__ import annotations

from ..config.backbones import MFConfig
from .registry import Backbone

BACKBONE = Backbone("mf", MFConfig)
