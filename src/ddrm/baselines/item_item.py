"""Shared machinery of item-item models: a size guard and scoring ``X[users] @ W``."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..data.interactions import Interactions, history_matrix
from ..errors import ConfigError
from ..recommender import Recommender


def check_item_count(name: str, n_items: int, max_items: int) -> None:
    """Refuse a catalogue too large for a dense n_items x n_items matrix (one sentence naming ``max_items``)."""
    if n_items > max_items:
        raise ConfigError(f"{name} builds an n_items x n_items matrix and {n_items} items exceed "
                          f"max_items={max_items}; raise max_items if you have the memory.")


class ItemItemModel(Recommender):
    """A model whose scores are ``X[users] @ W`` with an n_items x n_items weight matrix ``W`` (dense or sparse)."""

    max_items: int = 20000
    weights_: sp.spmatrix | torch.Tensor

    def _guard(self, n_items: int) -> None:
        check_item_count(self.name, n_items, self.max_items)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return self._score_rows(self.seen_[users.cpu().numpy()])

    def _score_rows(self, x: sp.csr_matrix) -> torch.Tensor:
        """``x @ W`` [B, n_items] for interaction rows ``x`` [B, n_items]."""
        if isinstance(self.weights_, torch.Tensor):
            return torch.from_numpy(x.toarray().astype(np.float32)) @ self.weights_
        return torch.from_numpy(np.asarray((x @ self.weights_).toarray(), dtype=np.float32))

    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [len(histories), n_items] for users given by their item indices (fold-in: no refit)."""
        self._check_fitted()
        return self._score_rows(history_matrix(histories, self.seen_.shape[1]))

    def fitted_state(self) -> dict[str, torch.Tensor]:
        if isinstance(self.weights_, torch.Tensor):
            return {"weights": self.weights_}
        w = self.weights_.tocsr()
        return {"indptr": torch.from_numpy(w.indptr.astype(np.int64)), "indices": torch.from_numpy(
            w.indices.astype(np.int64)), "values": torch.from_numpy(w.data.astype(np.float32))}

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        n = data.n_items
        self.weights_ = state["weights"] if "weights" in state else sp.csr_matrix(
            (state["values"].numpy(), state["indices"].numpy(), state["indptr"].numpy()), shape=(n, n))
        self.seen_ = data.train


def topk_per_column(dense_block: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keep the k largest entries of each column of ``dense_block`` [n, c]: (rows, cols, values)."""
    n, c = dense_block.shape
    k = min(k, n)
    idx = np.argpartition(-dense_block, k - 1, axis=0)[:k]
    vals = np.take_along_axis(dense_block, idx, axis=0)
    cols = np.broadcast_to(np.arange(c), idx.shape)
    keep = vals > 0
    return idx[keep], cols[keep], vals[keep]


def blockwise_topk(left: sp.csr_matrix, right: sp.csc_matrix, k: int, transform, block: int = 1024
                   ) -> sp.csr_matrix:
    """``W = topk_per_column(transform(left @ right[:, block], block))`` computed in column blocks.

    Memory is bounded by n_items x block. ``transform(dense, cols)`` post-processes one dense block in place.
    """
    n = left.shape[0]
    rows, cols, vals = [], [], []
    for lo in range(0, right.shape[1], block):
        hi = min(lo + block, right.shape[1])
        dense = np.asarray((left @ right[:, lo:hi]).toarray(), dtype=np.float32)
        transform(dense, np.arange(lo, hi))
        r, c, v = topk_per_column(dense, k)
        rows.append(r)
        cols.append(c + lo)
        vals.append(v)
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(n, right.shape[1]), dtype=np.float32)
