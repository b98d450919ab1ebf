"""The files ``ddrm pretrain`` and ``ddrm train`` read: their sections, each a schema of this package."""

from __future__ import annotations

from dataclasses import dataclass, field

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
