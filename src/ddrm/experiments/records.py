"""Cell records: a finished experiment cell as one portable file, so an experiment outlives its machine.

An experiment's cells live in its output folder (``runs/experiments/ID/cells``), which a machine that is taken
back loses. ``ddrm experiment ... --records DIR`` keeps a copy of each finished cell in DIR, a folder meant to be
committed or synced: ``DIR/<dataset>/<model>/seed<k>-<fingerprint>.npz`` holds the cell's ``metrics.json`` payload
(as JSON text) and its per-user test metrics (the arrays of ``per_user.npz``), loaded without pickle.

The fingerprint (:func:`fingerprint`) hashes what decides the cell's numbers: its kind, model, seed, full config,
data section and, for a DDRM cell, the fingerprint of the backend cell it starts from; not where it ran (the data
root, the device, the CPU's model), whose small numerical differences the records do not distinguish. So a record
is reused by any experiment that asks for the same cell (the 3-seed LightGCN cells of one table serve the next),
and never for a cell whose config has changed since (a newly installed tuned config gives a new fingerprint and a
fresh run). The code's version is not part of it: after a change that moves numbers,
delete the records it touches.
"""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DDRMError
from ..io import atomic_path

FORMAT = "ddrm-cell-record/1"


def to_npz(per_user: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per-user metric arrays keyed for an ``.npz`` file (``recall@20`` -> ``recall_at_20``)."""
    return {k.replace("@", "_at_"): v for k, v in per_user.items()}


def from_npz(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of :func:`to_npz`."""
    return {k.replace("_at_", "@"): v for k, v in arrays.items()}


def _without(section: Any, key: str) -> Any:
    return {k: v for k, v in section.items() if k != key} if isinstance(section, dict) else section


def fingerprint(kind: str, name: str, seed: int, config: dict[str, Any], data: dict[str, Any],
                needs: str | None = None) -> str:
    """16 hex digits identifying a cell's computation (see the module docstring); ``needs``: the backend cell's.
    Where it runs is left out, as the machine is: the data root and the device (a baseline's, or the ``train`` /
    ``pretrain`` sections')."""
    cfg = _without(config, "device")
    for section, key in (("data", "root"), ("train", "device"), ("pretrain", "device")):
        if section in cfg:
            cfg[section] = _without(cfg[section], key)
    blob = json.dumps({"kind": kind, "name": name, "seed": seed, "config": cfg, "data": _without(data, "root"),
                       "needs": needs}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def record_path(records: Path, key: str, fp: str) -> Path:
    """``records/<cell key>-<fingerprint>.npz`` (the key is ``dataset/model/seedK``)."""
    return records / f"{key}-{fp}.npz"


def save_record(path: Path, payload: dict[str, Any], per_user: dict[str, np.ndarray]) -> None:
    """Write one cell's record atomically (compressed; per-user arrays as given, so p-values are reproduced)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, format=np.array(FORMAT), metrics=np.array(json.dumps(payload, sort_keys=True)),
                            **to_npz(per_user))


def load_record(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(metrics payload, per-user arrays)`` of a record; a file that is not one is one sentence naming it."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT or "metrics" not in z.files:
                raise ValueError(f"not a {FORMAT} file")
            payload = json.loads(str(z["metrics"]))
            arrays = from_npz({k: z[k] for k in z.files if k not in ("format", "metrics")})
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise DDRMError(f"{path}: not a readable cell record ({exc}).") from None
    return payload, arrays


__all__ = ["fingerprint", "record_path", "save_record", "load_record", "to_npz", "from_npz", "FORMAT"]
