"""Neighbourhood baselines: ItemKNN (cosine with shrink) and RP3beta (random walk with popularity penalty)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from ..data.interactions import Interactions
from ..errors import ConfigError
from .item_item import ItemItemModel, blockwise_topk


class ItemKNN(ItemItemModel):
    """Item-based k-nearest neighbours: ``sim(i, j) = <x_i, x_j> / (|x_i| |x_j| + shrink)``, top-k per item.

    scores = ``X[users] @ S`` with S keeping the ``topk`` most similar items of each item (self excluded).
    """

    name = "itemknn"

    def __init__(self, topk: int = 100, shrink: float = 10.0, max_items: int = 100000) -> None:
        self.topk = topk
        self.shrink = shrink
        self.max_items = max_items

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> ItemKNN:
        if self.topk < 1 or self.shrink < 0:
            raise ConfigError(f"ItemKNN's topk must be >= 1 and shrink >= 0, got topk={self.topk}, "
                              f"shrink={self.shrink}.")
        self._guard(data.n_items)
        x = data.train.astype(np.float32)
        norms = np.sqrt(np.asarray(x.sum(axis=0)).ravel())  # binary data: |x_i| = sqrt(popularity)

        def cosine(dense: np.ndarray, cols: np.ndarray) -> None:
            dense /= norms[:, None] * norms[None, cols] + self.shrink + 1e-12
            dense[cols, np.arange(cols.size)] = 0.0

        self.weights_ = blockwise_topk(x.T.tocsr(), x.tocsc(), self.topk, cosine)
        self.seen_ = data.train
        return self


class RP3beta(ItemItemModel):
    """RP3beta (Paudel et al., 2017): three-step random walk user -> item -> user -> item.

    ``W = (P_iu^alpha @ P_ui^alpha) / pop_j^beta`` with row-stochastic transition matrices, top-k per item;
    scores = ``X[users] @ W``.
    """

    name = "rp3beta"

    def __init__(self, alpha: float = 1.0, beta: float = 0.5, topk: int = 100, max_items: int = 100000) -> None:
        self.alpha = alpha
        self.beta = beta
        self.topk = topk
        self.max_items = max_items

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> RP3beta:
        if self.topk < 1 or self.alpha <= 0:
            raise ConfigError(f"RP3beta's topk must be >= 1 and alpha > 0, got topk={self.topk}, alpha={self.alpha}.")
        self._guard(data.n_items)
        x = data.train.astype(np.float32)
        deg_u = np.maximum(np.asarray(x.sum(axis=1)).ravel(), 1)
        pop = np.asarray(x.sum(axis=0)).ravel()
        p_ui = sp.diags(1.0 / deg_u) @ x
        p_iu = sp.diags(1.0 / np.maximum(pop, 1)) @ x.T
        p_ui.data **= self.alpha
        p_iu = p_iu.tocsr()
        p_iu.data **= self.alpha
        penalty = np.power(np.maximum(pop, 1), -self.beta)

        def popularity_penalty(dense: np.ndarray, cols: np.ndarray) -> None:  # dense[j, i] = W[i, j]
            dense *= penalty[:, None]
            dense[cols, np.arange(cols.size)] = 0.0

        # W^T = P_ui^T @ P_iu^T in column blocks: top-k per column of W^T = the k best targets j of each item i
        w = blockwise_topk(sp.csr_matrix(p_ui.T), sp.csc_matrix(p_iu.T), self.topk, popularity_penalty).T.tocsr()
        self.weights_ = w
        self.seen_ = data.train
        return self
