"""Checkpoints: plain dicts of tensors and JSON-able values, saved atomically, loaded with ``weights_only=True``."""

from __future__ import annotations

import logging
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from .data.interactions import Interactions
from .errors import CheckpointError
from .io import atomic_path

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (with ``format_version``) to ``path`` via a temporary file, fsync and rename."""
    payload = {"format_version": FORMAT_VERSION, **payload}
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike[str], kind: str | tuple[str, ...]) -> dict[str, Any]:
    """Load and check a checkpoint of ``kind`` (``backend`` or ``ddrm``); problems raise CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: checkpoint not found.")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{p}: not a readable ddrm checkpoint (corrupted or truncated: {first[:120]}).") from None
    if not isinstance(payload, dict) or "kind" not in payload:
        raise CheckpointError(f"{p}: not a ddrm checkpoint (no 'kind' entry).")
    kinds = (kind,) if isinstance(kind, str) else kind
    if payload["kind"] not in kinds:
        raise CheckpointError(f"{p}: is a {payload['kind']} checkpoint, expected {' or '.join(kinds)}.")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{p}: checkpoint format version {payload.get('format_version')} is not supported "
                              f"(this ddrm reads version {FORMAT_VERSION}).")
    return payload


def data_info(data: Interactions) -> dict[str, Any]:
    return {"name": data.name, "fingerprint": data.fingerprint(), "n_users": data.n_users, "n_items": data.n_items}


def check_data(payload: dict[str, Any], data: Interactions, path: str | os.PathLike[str]) -> None:
    """The checkpoint must have been trained on data of the same shape; a different fingerprint only warns."""
    info = payload.get("data", {})
    if (info.get("n_users"), info.get("n_items")) != (data.n_users, data.n_items):
        raise CheckpointError(f"{path}: trained on {info.get('n_users')} users x {info.get('n_items')} items but the "
                              f"data has {data.n_users} x {data.n_items}; pass the dataset it was trained on.")
    if info.get("fingerprint") != data.fingerprint():
        logger.warning("%s: data fingerprint %s differs from the training data's %s (same shape, other interactions)",
                       path, data.fingerprint(), info.get("fingerprint"))
