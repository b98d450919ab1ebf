"""Vectorised sampling of BPR triples (user, positive, negative) from a CSR training matrix."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


def interaction_keys(train: sp.csr_matrix) -> np.ndarray:
    """Sorted int64 keys ``user * n_items + item`` of the training interactions (CSR order is already sorted)."""
    users = np.repeat(np.arange(train.shape[0], dtype=np.int64), np.diff(train.indptr))
    return users * train.shape[1] + train.indices.astype(np.int64)


def is_interacted(train: sp.csr_matrix, users: np.ndarray, items: np.ndarray, keys: np.ndarray | None = None
                  ) -> np.ndarray:
    """Boolean [n]: whether (users[k], items[k]) is a training interaction."""
    keys = interaction_keys(train) if keys is None else keys
    q = users.astype(np.int64) * train.shape[1] + items.astype(np.int64)
    pos = np.searchsorted(keys, q)
    pos = np.minimum(pos, max(keys.size - 1, 0))
    return keys[pos] == q if keys.size else np.zeros(q.size, dtype=bool)


def sample_negatives(train: sp.csr_matrix, users: np.ndarray, rng: np.random.Generator,
                     keys: np.ndarray | None = None, max_rounds: int = 100) -> np.ndarray:
    """One uniform negative item per user in ``users`` (shape [n]), never one of the user's training items.

    Rejection sampling in vectorised rounds; a user who interacted with every item keeps a random item.
    """
    keys = interaction_keys(train) if keys is None else keys
    n_items = train.shape[1]
    neg = rng.integers(0, n_items, size=users.size)
    bad = np.flatnonzero(is_interacted(train, users, neg, keys))
    full = np.diff(train.indptr)[users[bad]] >= n_items if bad.size else np.zeros(0, bool)
    bad = bad[~full]
    for _ in range(max_rounds):
        if not bad.size:
            break
        neg[bad] = rng.integers(0, n_items, size=bad.size)
        bad = bad[is_interacted(train, users[bad], neg[bad], keys)]
    return neg


def sample_triples(train: sp.csr_matrix, n: int, rng: np.random.Generator, keys: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` BPR triples: users uniform over users with training items, a uniform positive, a uniform negative.

    Returns (users, positives, negatives), int64 arrays of shape [n].
    """
    deg = np.diff(train.indptr)
    active = np.flatnonzero(deg > 0)
    users = active[rng.integers(0, active.size, size=n)]
    pos = train.indices[train.indptr[users] + (rng.random(n) * deg[users]).astype(np.int64)].astype(np.int64)
    neg = sample_negatives(train, users, rng, keys)
    return users.astype(np.int64), pos, neg
