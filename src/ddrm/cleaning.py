"""Noise scores for training interactions, and cleaned datasets (``ddrm noise``).

Every training interaction (u, i) gets a score, low = likely noise:

- DDRM: its reweighting score ``s_pos = <x0_hat_u, x0_hat_i>`` at t = 0 (docs/method.md, "Reweighting"), the
  quantity whose sigmoid down-weights a positive in DDRM's loss;
- any other model (a backend, EASE, ...): its own ranking score ``score(u)[i]`` (for an embedding backend
  ``<e_u, e_i>``; for a backend trained with T-CE this is the negated T-CE loss, which T-CE truncates);
- popularity: the item's training degree (a random accidental click lands on a less popular item on average).

``drop_suspects`` removes the lowest-scored share of the training interactions, so that any model can be retrained on
the rest; valid and test are untouched.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch

from .data.interactions import Interactions
from .errors import ConfigError
from .evaluation import Scorer, noise_auc

logger = logging.getLogger(__name__)


def interaction_scores(model: Scorer, data: Interactions, batch_users: int = 1024) -> np.ndarray:
    """Score of every training interaction in CSR order, float64 [nnz]; low = likely noise.

    DDRM models use their reweighting score (``noise_scores``); other models their ranking score, gathered from
    ``score(users)`` one batch of ``batch_users`` users at a time (memory [batch_users, n_items]).
    """
    if hasattr(model, "noise_scores"):
        return np.asarray(model.noise_scores(data), dtype=np.float64)
    train = data.train
    out = np.empty(train.nnz, dtype=np.float64)
    device = getattr(model, "device_", "cpu")
    with torch.no_grad():
        for lo in range(0, data.n_users, batch_users):
            hi = min(lo + batch_users, data.n_users)
            a, b = train.indptr[lo], train.indptr[hi]
            if a == b:
                continue
            rows = torch.from_numpy(np.repeat(np.arange(hi - lo), np.diff(train.indptr[lo:hi + 1])))
            cols = torch.from_numpy(train.indices[a:b].astype(np.int64))
            scores = model.score(torch.arange(lo, hi, device=device)).float().cpu()
            out[a:b] = scores[rows, cols].double().numpy()
    return out


def popularity_scores(data: Interactions) -> np.ndarray:
    """The training degree of each training interaction's item, float64 [nnz] (CSR order)."""
    degree = np.bincount(data.train.indices, minlength=data.n_items)
    return degree[data.train.indices].astype(np.float64)


def noise_labels(data: Interactions, threshold: float = 4.0) -> tuple[np.ndarray | None, str]:
    """Known noise flags of the training interactions (bool [nnz], CSR order) and where they come from: the
    ``noise`` label (planted or injected noise), else ``rating < threshold`` (natural noise: low ratings kept as
    positives), else ``(None, "")``."""
    labels = data.labels.get("train", {})
    if "noise" in labels:
        return np.asarray(labels["noise"]).astype(bool), "planted noise label"
    if "rating" in labels:
        rating = np.asarray(labels["rating"], dtype=np.float64)
        return rating < threshold, f"rating < {threshold:g}"
    return None, ""


def most_suspect(scores: np.ndarray, data: Interactions, top: int) -> list[dict[str, Any]]:
    """The ``top`` training interactions with the lowest scores: raw user and item ids, score, rank (1 = most
    suspect)."""
    users, items = data.pairs("train")
    k = min(top, scores.size)
    idx = np.argpartition(scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    idx = idx[np.lexsort((idx, scores[idx]))]  # by score, ties by CSR position
    raw_u, raw_i = data.raw_user(users[idx]), data.raw_item(items[idx])
    return [{"rank": r + 1, "user_id": str(u), "item_id": str(i), "score": float(s)}
            for r, (u, i, s) in enumerate(zip(raw_u, raw_i, scores[idx], strict=True))]


def drop_suspects(data: Interactions, scores: np.ndarray, ratio: float) -> Interactions:
    """``data`` without the ``ratio`` share of training interactions with the lowest scores (ties: the earlier CSR
    position goes first, as in ``most_suspect``); train labels follow the kept interactions, valid and test are
    unchanged."""
    if not 0 <= ratio < 1:
        raise ConfigError(f"drop ratio must lie in [0, 1), got {ratio}.")
    nnz = data.train.nnz
    if scores.shape != (nnz,):
        raise ConfigError(f"expected one score per training interaction ({nnz}), got {scores.shape}.")
    n_drop = int(round(ratio * nnz))
    order = np.lexsort((np.arange(nnz), scores))
    keep = np.ones(nnz, dtype=bool)
    keep[order[:n_drop]] = False
    train = data.train.copy()
    train.data = keep.astype(train.dtype)
    train.eliminate_zeros()
    labels = {k: np.asarray(v)[keep] for k, v in data.labels.get("train", {}).items()}
    logger.info("dropped %d of %d training interactions (%.1f %%)", n_drop, nnz, 100 * ratio)
    return data.with_train(train, labels or None)


def auc_report(scores: dict[str, np.ndarray], data: Interactions, threshold: float = 4.0) -> dict[str, Any]:
    """ROC-AUC of each named score separating clean from noisy training interactions, against ``noise_labels``
    (empty when the data has no labels)."""
    is_noise, source = noise_labels(data, threshold)
    if is_noise is None:
        return {}
    return {"labels": source, "noisy": int(is_noise.sum()), "interactions": int(is_noise.size),
            "auc": {name: noise_auc(s, is_noise) for name, s in scores.items()}}
