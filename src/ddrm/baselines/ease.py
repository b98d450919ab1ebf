"""EASE (Steck, 2019): closed-form item-item regression with zero diagonal."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch

from ..data.interactions import Interactions
from ..errors import ConfigError
from .item_item import ItemItemModel


class EASE(ItemItemModel):
    """``B = I - P diagMat(1 / diag(P))`` with ``P = (X^T X + reg I)^-1``; scores = ``X[users] @ B``.

    Builds a dense n_items x n_items matrix: refuses above ``max_items``.
    """

    name = "ease"

    def __init__(self, reg: float = 1000.0, max_items: int = 20000) -> None:
        self.reg = reg
        self.max_items = max_items

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> EASE:
        if self.reg <= 0:
            raise ConfigError(f"EASE's reg must be > 0, got {self.reg}.")
        self._guard(data.n_items)
        self.weights_ = torch.from_numpy(ease_weights(data.train, self.reg).astype(np.float32))
        self.seen_ = data.train
        return self


def ease_weights(train: sp.spmatrix, reg: float) -> np.ndarray:
    """EASE's item-item weights [n_items, n_items] (float64, zero diagonal) for a [n_users, n_items] matrix."""
    gram = np.asarray((train.T @ train).toarray(), dtype=np.float64)
    gram[np.diag_indices_from(gram)] += reg
    p = np.linalg.inv(gram)
    b = -p / np.diag(p)[None, :]
    b[np.diag_indices_from(b)] = 0.0
    return b
