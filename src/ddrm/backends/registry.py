"""The backbones ddrm knows, by name: each one's config class, module class and (for the given ones) how its
starting embeddings are made. One file per backbone: ``mf``, ``lightgcn``, ``sgl``, ``imported``, ``ease_factors``,
``ials``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..config.backbones import BackendConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from .base import EmbeddingBackend

Initial = Callable[[BackendConfig, Interactions, int], tuple[torch.Tensor, torch.Tensor]]


@dataclass(frozen=True)
class Backbone:
    """A backbone: ``config`` (its settings class), ``module`` (its trainable module class) and ``initial``:
    ``(cfg, data, seed) -> (users [n_users, d], items [n_items, d])``, the embeddings it starts from when they are
    given (loaded or computed in closed form) instead of a random initialisation (None: random, trained by BPR)."""

    name: str
    config: type[BackendConfig]
    module: type[EmbeddingBackend] = EmbeddingBackend
    initial: Initial | None = None

    @property
    def given(self) -> bool:
        return self.initial is not None


def backbones() -> dict[str, Backbone]:
    """Every backbone by name, in a fixed order."""
    from . import ease_factors, ials, imported, lightgcn, mf, sgl

    return {b.name: b for b in (mf.BACKBONE, lightgcn.BACKBONE, sgl.BACKBONE, imported.BACKBONE,
                                ease_factors.BACKBONE, ials.BACKBONE)}


def backbone(name: str) -> Backbone:
    """The backbone called ``name``; an unknown name is a ConfigError that lists the known ones."""
    known = backbones()
    if name not in known:
        raise ConfigError(f"unknown backend {name!r}; choose one of {', '.join(known)}.")
    return known[name]
