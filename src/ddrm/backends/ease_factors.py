"""The ``ease-factors`` backbone, EASE as embeddings: a low-rank symmetric factorisation of EASE's item-item weights.

EASE (Steck, 2019) scores ``X B`` with a dense item-item matrix ``B``. Its symmetric part ``S = (B + B^T) / 2``
keeps the ranking quality (ml-1m_noisy: test Recall@20 0.1352 vs 0.1344) and has an eigendecomposition
``S = V diag(lam) V^T``. Keeping the ``dim`` largest eigenvalues (negative ones clipped to 0) gives item embeddings
``E = V_d sqrt(lam_d)`` with ``E E^T ~ S``; a user's embedding is the mean of their training items' rows of ``E``, so
``u . e_i = (1 / |H_u|) sum_{j in H_u} S_ji``: EASE's symmetric scores for that user, divided by the history length
(the same ranking) and truncated to rank ``dim``. Both are multiplied by one constant so that the item embeddings'
mean L2 norm is ``norm`` (DDRM's BPR acts on dot products, so the scale matters to it; rankings do not change).
"""

from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from ..config.backbones import EaseFactorsConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from .registry import Backbone

logger = logging.getLogger(__name__)


def ease_factors(train: sp.csr_matrix, dim: int, reg: float = 1000.0, norm: float = 1.0,
                 max_items: int = 20000) -> tuple[torch.Tensor, torch.Tensor]:
    """User [n_users, dim] and item [n_items, dim] float32 embeddings from EASE's weights on ``train``.

    ``reg``: EASE's L2 weight; ``norm``: mean L2 norm of the item embeddings; ``max_items``: refuse larger catalogues
    (EASE inverts a dense n_items x n_items matrix).
    """
    from ..baselines.ease import ease_weights
    from ..baselines.item_item import check_item_count

    n_items = train.shape[1]
    check_item_count("backend 'ease-factors'", n_items, max_items)
    if not 1 <= dim <= n_items:
        raise ConfigError(f"backend.dim must be between 1 and the number of items ({n_items}) for 'ease-factors', "
                          f"got {dim}.")
    x = sp.csr_matrix(train, dtype=np.float64)
    b = ease_weights(x, reg)
    lam, vec = np.linalg.eigh((b + b.T) / 2)  # ascending
    lam, vec = lam[::-1][:dim], vec[:, ::-1][:, :dim]
    if (lam <= 0).any():
        logger.warning("ease-factors: %d of the %d largest eigenvalues are <= 0 and give zero columns",
                       int((lam <= 0).sum()), dim)
    items = vec * np.sqrt(np.clip(lam, 0.0, None))[None, :]
    counts = np.asarray(x.sum(axis=1)).ravel()
    users = (x @ items) / np.maximum(counts, 1.0)[:, None]
    mean_norm = float(np.linalg.norm(items, axis=1).mean())
    scale = norm / mean_norm if mean_norm > 0 else 1.0
    logger.info("ease-factors: rank %d of %d, kept eigenvalues %.3g..%.3g, scale %.4g", dim, n_items, lam[0],
                lam[-1], scale)
    return (torch.from_numpy((users * scale).astype(np.float32)),
            torch.from_numpy((items * scale).astype(np.float32)))


def initial(cfg: EaseFactorsConfig, data: Interactions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """EASE's factors of ``data.train`` (closed form; ``seed`` unused)."""
    return ease_factors(data.train, cfg.dim, cfg.ease_reg, cfg.ease_norm)


BACKBONE = Backbone("ease-factors", EaseFactorsConfig, initial=initial)  # type: ignore[arg-type]
