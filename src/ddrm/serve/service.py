"""The recommendation service behind ``ddrm serve``: one model loaded once, raw ids in and out, no HTTP here."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from ..backends import Backend
from ..checkpoint import load_checkpoint
from ..data.interactions import Interactions
from ..errors import DDRMError, NoFoldIn
from ..model import DDRM
from ..recommender import Recommender
from ..runs import CHECKPOINT_KINDS, checkpoint_data_config, load_model
from .metadata import find_item_metadata, read_item_metadata

logger = logging.getLogger(__name__)

ModelName = Literal["ddrm", "backend"]
MAX_K = 1000


class NotFound(DDRMError):
    """An unknown user (HTTP 404)."""


class InvalidRequest(DDRMError):
    """A request that cannot be answered as asked (HTTP 422)."""


class RecommendationService:
    """Top-K recommendations from a ``ddrm.pt`` (DDRM + its backend), ``backend.pt`` or ``baseline.pt`` checkpoint.

    Parameters
    ----------
    checkpoint : path of the checkpoint
    data : the dataset it was trained on (default: loaded from the checkpoint's data section + ``data_overrides``)
    data_overrides : ``{"name": ..., "root": ..., "read": {...}}`` applied to the saved data section
    items_file : item metadata (``item_id`` + ``title`` / ``genres`` columns, CSV/TSV or RecBole ``.item``); found
        next to the data when not given
    device : torch device for inference
    """

    def __init__(self, checkpoint: str | os.PathLike[str], data: Interactions | None = None,
                 data_overrides: dict[str, Any] | None = None, items_file: str | os.PathLike[str] | None = None,
                 device: str = "cpu") -> None:
        payload = load_checkpoint(checkpoint, CHECKPOINT_KINDS)
        cfg = checkpoint_data_config(payload, data_overrides)
        self.data = data if data is not None else cfg.load(quiet=True)
        self.checkpoint = str(checkpoint)
        self.kind: str = payload["kind"]
        model = load_model(checkpoint, self.data, device)
        self.ddrm: DDRM | None = model if isinstance(model, DDRM) else None
        # a baseline checkpoint serves as "backend": the one model there is
        self.backend: Backend | Recommender = model.backend if isinstance(model, DDRM) else model
        self.backend_name = self.backend.config.name if isinstance(self.backend, Backend) else self.backend.name
        d = self.data
        self.user_ids = d.user_ids.astype(str) if d.user_ids is not None else np.arange(d.n_users).astype(str)
        self.item_ids = d.item_ids.astype(str) if d.item_ids is not None else np.arange(d.n_items).astype(str)
        self._user_index = {u: k for k, u in enumerate(self.user_ids.tolist())}
        self._item_index = {i: k for k, i in enumerate(self.item_ids.tolist())}
        self.train = d.train
        meta_path = Path(items_file) if items_file else find_item_metadata(cfg)
        self.metadata = read_item_metadata(meta_path) if meta_path else {}
        if meta_path:
            logger.info("item metadata: %d items from %s", len(self.metadata), meta_path)
        # warm up (embeddings computed once, first-call allocations) so the first request is as fast as the rest
        self.recommend_user(self.user_ids[0], 1, self.default_model)

    # ------------------------------------------------------------------ info
    @property
    def default_model(self) -> ModelName:
        return "ddrm" if self.ddrm is not None else "backend"

    def health(self) -> dict[str, Any]:
        return {"status": "ok", "model": self.kind, "backend": self.backend_name, "dataset": self.data.name,
                "fingerprint": self.data.fingerprint(), "n_users": self.data.n_users, "n_items": self.data.n_items,
                "models": ["ddrm", "backend"] if self.ddrm is not None else ["backend"]}

    def users(self, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        """A page of raw user ids (for the web page's picker)."""
        return {"total": len(self.user_ids), "users": self.user_ids[offset:offset + limit].tolist()}

    def item(self, index: int) -> dict[str, Any]:
        raw = self.item_ids[index]
        return {"item_id": raw, **self.metadata.get(raw, {})}

    # ------------------------------------------------------------------ requests
    def _model(self, name: str | None) -> DDRM | Backend:
        name = name or self.default_model
        if name == "ddrm":
            if self.ddrm is None:
                raise InvalidRequest("model=ddrm is not available: the checkpoint holds a backend only.")
            return self.ddrm
        if name == "backend":
            return self.backend
        raise InvalidRequest(f"unknown model {name!r}; use ddrm or backend.")

    @staticmethod
    def _check_k(k: int) -> None:
        if not 1 <= k <= MAX_K:
            raise InvalidRequest(f"k must be between 1 and {MAX_K}, got {k}.")

    def user_index(self, raw: str) -> int:
        try:
            return self._user_index[str(raw)]
        except KeyError:
            raise NotFound(f"unknown user id {raw!r}; it is not in the training data (send its item history with "
                           f"POST /recommendations instead).") from None

    def history(self, raw_user: str) -> list[dict[str, Any]]:
        """The user's training items (raw ids + metadata)."""
        u = self.user_index(raw_user)
        return [self.item(int(i)) for i in self.train.indices[self.train.indptr[u]:self.train.indptr[u + 1]]]

    def _ranked(self, scores: torch.Tensor, seen: list[np.ndarray], k: int) -> list[list[dict[str, Any]]]:
        scores = scores.float().clone()
        rows = np.repeat(np.arange(len(seen)), [len(s) for s in seen])
        if rows.size:
            scores[torch.from_numpy(rows), torch.from_numpy(np.concatenate(seen).astype(np.int64))] = -torch.inf
        k_eff = min(k, scores.shape[1])
        vals, idx = torch.topk(scores, k_eff, dim=1)
        out = []
        for r in range(len(seen)):
            items = []
            for rank, (i, s) in enumerate(zip(idx[r].tolist(), vals[r].tolist(), strict=True)):
                if s == -np.inf:
                    break
                items.append({"rank": rank + 1, "score": float(s), **self.item(i)})
            out.append(items)
        return out

    def recommend_users(self, raw_users: list[str], k: int = 20, model: str | None = None
                        ) -> list[dict[str, Any]]:
        """Top-k (seen items excluded) for known users, in one batch."""
        self._check_k(k)
        m = self._model(model)
        idx = [self.user_index(u) for u in raw_users]
        if not idx:
            return []
        scores = m.score(torch.tensor(idx, dtype=torch.long))
        seen = [self.train.indices[self.train.indptr[u]:self.train.indptr[u + 1]] for u in idx]
        lists = self._ranked(scores, seen, k)
        name = model or self.default_model
        return [{"user_id": str(raw), "model": name, "items": items}
                for raw, items in zip(raw_users, lists, strict=True)]

    def recommend_user(self, raw_user: str, k: int = 20, model: str | None = None) -> dict[str, Any]:
        return self.recommend_users([raw_user], k, model)[0]

    def recommend_history(self, raw_items: list[str], k: int = 20, model: str | None = None) -> dict[str, Any]:
        """Top-k for a user not in training, given by raw item ids (fold-in; the history is excluded)."""
        self._check_k(k)
        if not raw_items:
            raise InvalidRequest("the item history is empty; give at least one item id.")
        unknown = [i for i in raw_items if str(i) not in self._item_index]
        if unknown:
            raise InvalidRequest(f"unknown item id {unknown[0]!r} in the history ({len(unknown)} unknown in all).")
        hist = np.unique(np.array([self._item_index[str(i)] for i in raw_items], dtype=np.int64))
        m = self._model(model)
        try:
            scores = m.score_history([hist])
        except NoFoldIn as exc:  # the model's own sentence, as a bad request
            raise InvalidRequest(str(exc)) from None
        return {"user_id": None, "model": model or self.default_model, "history_size": int(hist.size),
                "items": self._ranked(scores, [hist], k)[0]}
