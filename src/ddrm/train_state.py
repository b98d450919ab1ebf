"""The resumable state of a training run: weights, optimiser, RNG streams, position, best state and counters.

A state file is a checkpoint of kind ``train_state`` (atomic write + fsync + rename, ``weights_only`` load). It is
written at the end of every epoch and when a signal stops training mid-epoch. ``epoch``/``step`` say where to go on:
the run resumes at step ``step`` of epoch ``epoch``, re-drawing that epoch's triples from ``epoch_rng`` (the numpy
generator's state at the start of the epoch) and then restoring the torch streams as they were at the interruption,
so a resumed run is bit-identical to an uninterrupted one on the same machine.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .checkpoint import check_data, data_info, load_checkpoint, save_checkpoint
from .data.interactions import Interactions
from .errors import CheckpointError
from .trainable import TrainableModule

# TrainConfig fields that may change between an interruption and its resumption.
RESUMABLE_CHANGES = ("epochs", "patience", "device")


def capture_rng(model: TrainableModule) -> dict[str, Any]:
    """The torch / python / numpy global streams plus the model's own generators (``model.rng_state()``)."""
    legacy = np.random.get_state(legacy=False)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "python": random.getstate(),
        "numpy": {"key": torch.from_numpy(legacy["state"]["key"].astype(np.int64)), "pos": legacy["state"]["pos"],
                  "has_gauss": legacy["has_gauss"], "gauss": legacy["gauss"]},
        "model": model.rng_state(),
    }


def restore_rng(model: TrainableModule, state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state({"bit_generator": "MT19937", "state": {"key": n["key"].numpy().astype(np.uint32),
                                                               "pos": n["pos"]},
                         "has_gauss": n["has_gauss"], "gauss": n["gauss"]})
    model.set_rng_state(state["model"])


@dataclass
class LoopState:
    """Everything ``train_loop`` needs to continue: position, counters, best state and RNG streams."""

    epoch: int = 1
    step: int = 0
    epoch_loss: float = 0.0
    epoch_rng: dict[str, Any] = field(default_factory=dict)
    rng: dict[str, Any] = field(default_factory=dict)
    bad: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    result: dict[str, Any] = field(default_factory=dict)
    model: dict[str, torch.Tensor] = field(default_factory=dict)
    optimizer: dict[str, Any] = field(default_factory=dict)


def save_state(path: str | os.PathLike[str], state: LoopState, desc: str, seed: int, train_cfg: dict[str, Any],
               data: Interactions) -> None:
    """Write ``state`` atomically (temporary file, fsync, rename) as a ``train_state`` checkpoint."""
    save_checkpoint(path, {"kind": "train_state", "desc": desc, "seed": seed, "train": train_cfg,
                           "data": data_info(data), **state.__dict__})


def load_state(path: str | os.PathLike[str], desc: str, seed: int, train_cfg: dict[str, Any],
               data: Interactions) -> LoopState:
    """Read a state written by :func:`save_state` and check it belongs to this run (phase, seed, data, config)."""
    payload = load_checkpoint(path, "train_state")
    check_data(payload, data, path)
    if payload["data"].get("fingerprint") != data.fingerprint():
        raise CheckpointError(f"{path}: the training state was written for other interactions (fingerprint "
                              f"{payload['data'].get('fingerprint')} vs {data.fingerprint()}); resume on the same data.")
    if payload.get("desc") != desc or payload.get("seed") != seed:
        raise CheckpointError(f"{path}: the state belongs to phase {payload.get('desc')!r} with seed "
                              f"{payload.get('seed')}, not {desc!r} with seed {seed}.")
    saved = payload.get("train", {})
    changed = sorted(k for k in set(saved) | set(train_cfg)
                     if k not in RESUMABLE_CHANGES and saved.get(k) != train_cfg.get(k))
    if changed:
        raise CheckpointError(f"{path}: train.{changed[0]} changed since the state was written "
                              f"({saved.get(changed[0])!r} -> {train_cfg.get(changed[0])!r}); resume with the same "
                              f"settings.")
    return LoopState(**{k: payload[k] for k in LoopState.__dataclass_fields__})


def state_exists(path: str | os.PathLike[str] | None) -> bool:
    return path is not None and Path(path).is_file()
