"""The files ``ddrm pretrain`` and ``ddrm train`` read: their sections, each a schema of this package."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .backbones import BackendConfig, LightGCNConfig
from .data import DataConfig
from .model import DDRMConfig
from .training import EvalConfig, TrainConfig


@dataclass
class PretrainConfig:
    """``ddrm pretrain``: train a backend with BPR and keep the best validation state."""

    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=LightGCNConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    output: str = "runs/pretrain"


@dataclass
class TrainRunConfig:
    """``ddrm train``: get a backend (train it, import it, or load ``backend_checkpoint``), then train DDRM on it.

    pretrain : optimisation of the backend when it is trained here; train : optimisation of DDRM
    """

    data: DataConfig = field(default_factory=DataConfig)
    backend: BackendConfig = field(default_factory=LightGCNConfig)
    backend_checkpoint: str | None = None
    pretrain: TrainConfig = field(default_factory=TrainConfig)
    ddrm: DDRMConfig = field(default_factory=DDRMConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    seed: int = 0
    output: str = "runs/train"


def with_backbone(cfg: Mapping[str, Any], backbone: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A ``ddrm train`` config (``cfg``) whose backend is the one a ``ddrm pretrain`` config (``backbone``, read from
    ``where``) describes, trained at the start of the run: its ``backend`` section replaces ``cfg``'s and its
    ``train`` section becomes ``pretrain`` (whole sections, so no key of another backbone is left behind), and a
    ``backend_checkpoint`` of ``cfg`` is dropped. The backbone's ``data``, ``eval``, ``seed`` and ``output`` are not
    read: DDRM's run keeps its own. The ``best.yaml`` of a backend's ``ddrm tune`` is such a file."""
    if not isinstance(backbone.get("backend"), Mapping):
        raise ConfigError(f"{where}: a backbone config needs a backend section (a config of 'ddrm pretrain', such "
                          f"as the best.yaml of a backend's 'ddrm tune').")
    train = backbone.get("train", {})
    if not isinstance(train, Mapping):
        raise ConfigError(f"{where}: config key 'train' must be a mapping.")
    return {**cfg, "backend": dict(backbone["backend"]), "pretrain": dict(train), "backend_checkpoint": None}
