"""The one in-memory data contract: CSR user x item matrices for train / valid / test."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

from ..errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "valid", "test")


def build_csr(
    users: np.ndarray,
    items: np.ndarray,
    shape: tuple[int, int],
    labels: Mapping[str, np.ndarray] | None = None,
    where: str = "",
) -> tuple[sp.csr_matrix, dict[str, np.ndarray], int]:
    """Build a canonical binary CSR matrix from (user, item) pairs.

    Parameters
    ----------
    users, items : int arrays of shape [n]
    shape : (n_users, n_items)
    labels : optional per-interaction arrays of shape [n] (rating, timestamp, noise flag, ...)
    where : a name for messages (a file or split)

    Returns
    -------
    (csr, labels, n_duplicates): the matrix with sorted indices and value 1.0, the labels reordered to match
    ``csr.data`` (for a duplicated pair the last occurrence wins), and how many duplicates were collapsed.
    """
    users = np.asarray(users, dtype=np.int64)
    items = np.asarray(items, dtype=np.int64)
    n_users, n_items = shape
    if users.size and (users.min() < 0 or items.min() < 0):
        raise DataError(f"{where or 'data'} contains a negative user or item id; ids must be >= 0.")
    if users.size and (users.max() >= n_users or items.max() >= n_items):
        raise DataError(f"{where or 'data'} has ids beyond the {n_users} users x {n_items} items of the dataset.")
    order = np.lexsort((np.arange(users.size)[::-1], items, users))  # by user, item, then last occurrence first
    u, i = users[order], items[order]
    keep = np.ones(u.size, dtype=bool)
    keep[1:] = (u[1:] != u[:-1]) | (i[1:] != i[:-1])
    n_dup = int(u.size - keep.sum())
    u, i, order = u[keep], i[keep], order[keep]
    indptr = np.zeros(n_users + 1, dtype=np.int64)
    np.cumsum(np.bincount(u, minlength=n_users), out=indptr[1:])
    csr = sp.csr_matrix((np.ones(u.size, dtype=np.float32), i.astype(np.int32), indptr), shape=shape)
    out_labels = {k: np.asarray(v)[order] for k, v in (labels or {}).items()}
    return csr, out_labels, n_dup


@dataclass
class Interactions:
    """Implicit feedback split into train / valid / test.

    Attributes
    ----------
    train, valid, test : scipy.sparse.csr_matrix of shape [n_users, n_items], binary (float32 ones), sorted indices
    user_ids, item_ids : optional raw ids (strings) indexed by the internal contiguous id
    labels : per split, per name (``rating``, ``timestamp``, ``noise``), an array aligned with that split's ``.data``
    name : a human-readable name (dataset name or folder)
    """

    train: sp.csr_matrix
    valid: sp.csr_matrix
    test: sp.csr_matrix
    user_ids: np.ndarray | None = None
    item_ids: np.ndarray | None = None
    labels: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        shapes = {s: getattr(self, s).shape for s in SPLITS}
        if len(set(shapes.values())) != 1:
            raise DataError(f"splits of {self.name or 'the dataset'} have different shapes: {shapes}.")
        if self.user_ids is not None and len(self.user_ids) != self.n_users:
            raise DataError("user id map length does not match the number of users.")
        if self.item_ids is not None and len(self.item_ids) != self.n_items:
            raise DataError("item id map length does not match the number of items.")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_pairs(
        cls,
        splits: Mapping[str, tuple[np.ndarray, np.ndarray]],
        n_users: int | None = None,
        n_items: int | None = None,
        labels: Mapping[str, Mapping[str, np.ndarray]] | None = None,
        user_ids: np.ndarray | None = None,
        item_ids: np.ndarray | None = None,
        name: str = "",
    ) -> Interactions:
        """Build from (users, items) int arrays per split; missing splits are empty.

        ``n_users`` / ``n_items`` default to 1 + the largest id seen in any split. Duplicated pairs are collapsed
        with a warning that counts them.
        """
        for s in splits:
            if s not in SPLITS:
                raise DataError(f"unknown split {s!r}; expected one of {', '.join(SPLITS)}.")
        arrays = {s: (np.asarray(u, dtype=np.int64), np.asarray(i, dtype=np.int64)) for s, (u, i) in splits.items()}
        if not any(u.size for u, _ in arrays.values()):
            raise DataError(f"{name or 'the dataset'} contains no interactions.")
        if n_users is None:
            n_users = int(max((u.max() for u, _ in arrays.values() if u.size), default=-1)) + 1
        if n_items is None:
            n_items = int(max((i.max() for _, i in arrays.values() if i.size), default=-1)) + 1
        mats: dict[str, sp.csr_matrix] = {}
        out_labels: dict[str, dict[str, np.ndarray]] = {}
        for s in SPLITS:
            u, i = arrays.get(s, (np.zeros(0, np.int64), np.zeros(0, np.int64)))
            mats[s], lab, n_dup = build_csr(u, i, (n_users, n_items), (labels or {}).get(s), where=f"{name} {s}".strip())
            if n_dup:
                logger.warning("%s: collapsed %d duplicated interactions in the %s split", name or "data", n_dup, s)
            if lab:
                out_labels[s] = lab
        _warn_cold(mats, name)
        return cls(mats["train"], mats["valid"], mats["test"], user_ids, item_ids, out_labels, name)

    # ------------------------------------------------------------------ views
    @property
    def n_users(self) -> int:
        return int(self.train.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.train.shape[1])

    def split(self, name: str) -> sp.csr_matrix:
        """The CSR matrix of split ``name`` (train, valid or test)."""
        if name not in SPLITS:
            raise DataError(f"unknown split {name!r}; expected one of {', '.join(SPLITS)}.")
        return getattr(self, name)

    def pairs(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(users, items) int64 arrays of shape [nnz] for split ``name``, in CSR order."""
        m = self.split(name)
        users = np.repeat(np.arange(self.n_users, dtype=np.int64), np.diff(m.indptr))
        return users, m.indices.astype(np.int64)

    def seen(self, name: str) -> sp.csr_matrix:
        """Items to exclude when ranking for split ``name``: train for valid, train + valid for test."""
        if name == "train":
            return sp.csr_matrix((self.n_users, self.n_items), dtype=np.float32)
        if name == "valid":
            return self.train
        m = (self.train + self.valid).tocsr()
        m.data[:] = 1.0
        m.sort_indices()
        return m

    def fingerprint(self) -> str:
        """A short sha256 of the shapes and sparsity patterns of all splits (identifies the data a model saw)."""
        h = hashlib.sha256()
        h.update(f"{self.n_users}x{self.n_items}".encode())
        for s in SPLITS:
            m = self.split(s)
            h.update(s.encode())
            h.update(np.ascontiguousarray(m.indptr, dtype=np.int64).tobytes())
            h.update(np.ascontiguousarray(m.indices, dtype=np.int64).tobytes())
        return h.hexdigest()[:16]

    def with_train(self, train: sp.csr_matrix, train_labels: dict[str, np.ndarray] | None = None) -> Interactions:
        """A copy with another training matrix (and its labels); valid and test are shared."""
        labels = dict(self.labels)
        if train_labels is None:
            labels.pop("train", None)
        else:
            labels["train"] = train_labels
        return Interactions(train, self.valid, self.test, self.user_ids, self.item_ids, labels, self.name)

    def summary(self) -> dict:
        """Counts, density and overlaps between splits, as a JSON-able dict."""
        out: dict = {"name": self.name, "fingerprint": self.fingerprint(), "n_users": self.n_users,
                     "n_items": self.n_items, "splits": {}}
        cells = self.n_users * self.n_items
        for s in SPLITS:
            m = self.split(s)
            rows = np.diff(m.indptr)
            out["splits"][s] = {
                "interactions": int(m.nnz),
                "users": int((rows > 0).sum()),
                "items": int((np.bincount(m.indices, minlength=self.n_items) > 0).sum()),
                "density": float(m.nnz / cells) if cells else 0.0,
                "labels": sorted(self.labels.get(s, {})),
            }
            if "noise" in self.labels.get(s, {}):
                out["splits"][s]["noisy_interactions"] = int(np.asarray(self.labels[s]["noise"]).astype(bool).sum())
        overlaps = {}
        for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
            overlaps[f"{a}&{b}"] = int(self.split(a).multiply(self.split(b)).nnz)
        out["overlaps"] = overlaps
        train_users = np.diff(self.train.indptr) > 0
        for s in ("valid", "test"):
            users = np.diff(self.split(s).indptr) > 0
            out["splits"][s]["users_without_train"] = int((users & ~train_users).sum())
        return out

    def raw_user(self, index: np.ndarray | int) -> np.ndarray:
        """Raw user ids for internal indices (the indices themselves as strings when no map exists)."""
        idx = np.asarray(index)
        return self.user_ids[idx] if self.user_ids is not None else idx.astype(str)

    def raw_item(self, index: np.ndarray | int) -> np.ndarray:
        """Raw item ids for internal indices (the indices themselves as strings when no map exists)."""
        idx = np.asarray(index)
        return self.item_ids[idx] if self.item_ids is not None else idx.astype(str)

    def user_index(self, raw: str) -> int:
        """Internal index of a raw user id; raises DataError when unknown."""
        return _lookup(self.user_ids, raw, self.n_users, "user")

    def item_index(self, raw: str) -> int:
        """Internal index of a raw item id; raises DataError when unknown."""
        return _lookup(self.item_ids, raw, self.n_items, "item")


def history_rows(histories: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Item-index histories [B lists] as CSR rows: (``indptr`` [B + 1], ``indices`` [total length]), int64."""
    counts = np.array([len(h) for h in histories], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if counts.sum() else \
        np.zeros(0, np.int64)
    return indptr, indices


def history_matrix(histories: list[np.ndarray], n_items: int) -> sp.csr_matrix:
    """Item-index histories [B lists] as a binary float32 CSR [B, n_items] (an item listed twice counts once)."""
    indptr, indices = history_rows(histories)
    x = sp.csr_matrix((np.ones(indices.size, dtype=np.float32), indices, indptr), shape=(len(histories), n_items))
    x.sum_duplicates()
    x.data[:] = 1.0
    return x


def _lookup(ids: np.ndarray | None, raw: str, n: int, kind: str) -> int:
    raw = str(raw)
    if ids is None:
        if raw.isdigit() and int(raw) < n:
            return int(raw)
    else:
        hits = np.flatnonzero(ids == raw)
        if hits.size:
            return int(hits[0])
    raise DataError(f"unknown {kind} id {raw!r}.")


def _warn_cold(mats: dict[str, sp.csr_matrix], name: str) -> None:
    """Say how many valid/test users and items never occur in train (documented: they are kept and evaluated)."""
    has_user = np.diff(mats["train"].indptr) > 0
    has_item = np.bincount(mats["train"].indices, minlength=mats["train"].shape[1]) > 0
    for s in ("valid", "test"):
        m = mats[s]
        users = np.flatnonzero(np.diff(m.indptr) > 0)
        cold_users = int((~has_user[users]).sum())
        cold_items = int(np.unique(m.indices[~has_item[m.indices]]).size)
        if cold_users or cold_items:
            logger.warning("%s: the %s split has %d users and %d items without any training interaction; they are "
                           "kept (full-ranking metrics count them, and no model can rank well for them)",
                           name or "data", s, cold_users, cold_items)

