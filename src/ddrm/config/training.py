"""Optimisation (``TrainConfig``) and the validation protocol (``EvalConfig``) of every command."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from ..evaluation import DEFAULT_KS, METRICS


@dataclass
class TrainConfig:
    """Optimisation settings.

    epochs : maximum number of epochs (one epoch = as many triples as training interactions)
    batch_size : triples per step
    lr : Adam learning rate; weight_decay : Adam weight decay
    eval_every : validate every this many epochs (all validation users)
    patience : stop after this many validations without improvement of ``eval.metric``
    device : ``cpu``, ``cuda``, ``cuda:N`` or ``auto``
    """

    epochs: int = 100
    batch_size: int = 2048
    lr: float = 1e-3
    weight_decay: float = 0.0
    eval_every: int = 5
    patience: int = 5
    device: str = "cpu"

    def validate(self) -> None:
        if self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.eval_every < 1 or self.patience < 1:
            raise ConfigError("train needs epochs >= 0, batch_size >= 1, lr > 0, eval_every >= 1 and patience >= 1.")


@dataclass
class EvalConfig:
    """Evaluation protocol: cut-offs, batch size, and the validation metric used for model selection."""

    ks: tuple[int, ...] = DEFAULT_KS
    batch_size: int | None = None
    metric: str = "recall@20"

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"eval.ks must be positive integers, got {list(self.ks)}.")
        name, _, k = self.metric.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) not in self.ks:
            raise ConfigError(f"eval.metric must be one of {', '.join(METRICS)} at a K in eval.ks, got {self.metric!r}.")
