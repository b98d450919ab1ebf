"""The ``import`` backbone: existing user / item embeddings from a torch state dict, an ``.npz`` archive, two ``.npy``
matrices or a ddrm backend checkpoint (optionally propagated or fine-tuned by BPR like any backbone)."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..config.backbones import ImportConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from .base import check_shapes
from .registry import Backbone


def _pick(tensors: dict[str, torch.Tensor], key: str | None, rows: int, word: str, path: Path) -> torch.Tensor:
    if key is not None:
        if key not in tensors:
            raise ConfigError(f"{path}: no tensor {key!r} (has: {', '.join(sorted(tensors))}).")
        return tensors[key]
    cands = [k for k, v in tensors.items() if v.ndim == 2 and v.shape[0] == rows and word in k.lower()]
    if not cands:
        cands = [k for k, v in tensors.items() if v.ndim == 2 and v.shape[0] == rows]
    if len(cands) != 1:
        raise ConfigError(f"{path}: cannot tell which tensor holds the {word} embeddings ({rows} rows); set "
                          f"backend.{word}_key (tensors: {', '.join(f'{k}{tuple(v.shape)}' for k, v in tensors.items())}).")
    return tensors[cands[0]]


def _load_tensors(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ConfigError(f"{path}: embedding file not found.")
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                return {k: torch.from_numpy(z[k]) for k in z.files}
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, ValueError, OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError) as exc:
        raise ConfigError(f"{path}: cannot read embeddings ({str(exc).splitlines()[0][:120]}).") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]  # a ddrm backend checkpoint or a wrapped state dict
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a state dict (a mapping of names to tensors).")
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def load_embeddings(cfg: ImportConfig, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(user [n_users, d], item [n_items, d]) float32 embeddings from ``cfg.path`` or ``cfg.user_path``/``item_path``."""
    if cfg.user_path and cfg.item_path:
        out = []
        for p in (Path(cfg.user_path), Path(cfg.item_path)):
            try:
                out.append(torch.from_numpy(np.load(p, allow_pickle=False)))
            except (FileNotFoundError, ValueError, OSError) as exc:
                raise ConfigError(f"{p}: cannot read a .npy matrix ({str(exc).splitlines()[0][:120]}).") from None
        user, item = out
    else:
        path = Path(cfg.path or "")
        tensors = _load_tensors(path)
        user = _pick(tensors, cfg.user_key, n_users, "user", path)
        item = _pick(tensors, cfg.item_key, n_items, "item", path)
    user, item = user.detach().float(), item.detach().float()
    if not (torch.isfinite(user).all() and torch.isfinite(item).all()):
        raise ConfigError("imported embeddings contain NaN or inf.")
    return user, item


def initial(cfg: ImportConfig, data: Interactions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The imported embeddings (users [n_users, d], items [n_items, d]), checked against ``data``."""
    user, item = load_embeddings(cfg, data.n_users, data.n_items)
    check_shapes(user, item, data, cfg.path or cfg.user_path or "import")
    return user, item


BACKBONE = Backbone("import", ImportConfig, initial=initial)  # type: ignore[arg-type]
