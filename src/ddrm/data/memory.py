"""Datasets already in memory: a scipy user x item matrix (the convention of ``implicit``) or a table of columns
(a pandas DataFrame, as LensKit and RecBole users hold one, or a plain dict of arrays).

Both go through the same splitting and checks as the files (``ddrm.data.preprocess``), so a matrix or a frame
split here gives the same :class:`Interactions` as the same interactions read from disk.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from ..errors import DataError
from .interactions import SPLITS, Interactions
from .preprocess import SplitOptions, split_table, tables_to_interactions, with_validation
from .table import RawTable


def _csr(matrix: Any, where: str) -> sp.csr_matrix:
    """``matrix`` (scipy sparse or a 2-D array) as CSR with its explicit zeros dropped; negative values refused."""
    if not sp.issparse(matrix) and np.ndim(matrix) != 2:
        raise DataError(f"{where} must be a 2-D user x item matrix (scipy sparse or array), got {type(matrix).__name__}.")
    csr = sp.csr_matrix(matrix, copy=True)
    csr.eliminate_zeros()
    if csr.nnz and not np.isfinite(csr.data).all():
        raise DataError(f"{where} contains NaN or infinite values.")
    if csr.nnz and (csr.data < 0).any():
        raise DataError(f"{where} contains negative values; ddrm reads implicit positive feedback "
                        f"(every nonzero entry is an interaction).")
    return csr


def from_matrix(train: Any, valid: Any = None, test: Any = None, *, split: SplitOptions | None = None,
                valid_ratio: float = 0.1, seed: int = 0, user_ids: np.ndarray | None = None,
                item_ids: np.ndarray | None = None, name: str = "matrix") -> Interactions:
    """:class:`Interactions` from scipy user x item matrices; row ``u`` stays user ``u``, column ``i`` item ``i``.

    Every nonzero entry is one interaction (counts or confidences become 1). Given ``train`` alone, it holds all
    interactions and is split at random by ``split`` (``ratios``, ``drop_cold``, ``seed``; the default 70 / 10 / 20);
    given ``train`` and ``test``, a seeded ``valid_ratio`` of each user's train items becomes validation unless
    ``valid`` is given too (as the file readers do, an empty validation split is carved out of train).

    Shapes: every matrix [n_users, n_items]; ``user_ids`` [n_users] and ``item_ids`` [n_items] optional raw ids.
    """
    mats = {s: _csr(m, f"{name} {s}") for s, m in (("train", train), ("valid", valid), ("test", test))
            if m is not None}
    shapes = {m.shape for m in mats.values()}
    if len(shapes) != 1:
        raise DataError(f"{name}: the matrices have different shapes: "
                        f"{', '.join(f'{s} {m.shape}' for s, m in mats.items())}.")
    if "valid" in mats and "test" not in mats:
        raise DataError(f"{name}: a valid matrix needs a test matrix too (or pass train alone to split it).")
    n_users, n_items = mats["train"].shape
    if "test" not in mats:  # one matrix: split it like an unsplit file, keeping the matrix's own ids
        opts = split or SplitOptions()
        if opts.method not in ("auto", "random") or opts.mode != "all":
            raise DataError(f"{name}: a matrix has no timestamps or ratings: only the random split (mode all) applies.")
        coo = mats["train"].tocoo()
        parts = split_table(RawTable(coo.row.astype(np.int64), coo.col.astype(np.int64), source=name), opts)
        pairs = {s: (p.users, p.items) for s, p in parts.items()}
    else:
        pairs = {s: (np.repeat(np.arange(n_users), np.diff(m.indptr)), m.indices) for s, m in mats.items()}
    data = Interactions.from_pairs(pairs, n_users, n_items, user_ids=_ids(user_ids, n_users, name, "user_ids"),
                                   item_ids=_ids(item_ids, n_items, name, "item_ids"), name=name)
    return with_validation(data, valid_ratio, seed)


def _ids(ids: np.ndarray | None, n: int, name: str, what: str) -> np.ndarray | None:
    if ids is None:
        return None
    ids = np.asarray(ids).astype(str)
    if ids.shape != (n,):
        raise DataError(f"{name}: {what} has shape {ids.shape}, expected ({n},) (one per matrix row / column).")
    return ids


def _column(frame: Any, col: str, name: str) -> np.ndarray:
    try:
        return np.asarray(frame[col])
    except (KeyError, IndexError, TypeError):
        columns = ", ".join(map(str, frame.keys())) if hasattr(frame, "keys") else "none"
        raise DataError(f"{name}: no column {col!r} (columns: {columns}).") from None


def _id_tokens(values: np.ndarray, name: str, col: str) -> np.ndarray:
    """Raw ids as strings; a missing id (None, NaN, empty) is refused with its row."""
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values)
        if not bad.any() and (values == np.round(values)).all():
            values = values.astype(np.int64)  # integer ids held as floats (a pandas column with NaN elsewhere)
    else:
        # object columns (pandas strings): None, and NaN (the one value unequal to itself), compared elementwise
        bad = (np.equal(values, None) | np.not_equal(values, values)) if values.dtype.kind == "O" \
            else np.zeros(values.size, dtype=bool)
    tokens = values.astype(str)
    bad |= tokens == ""
    if bad.any():
        raise DataError(f"{name}, row {int(np.flatnonzero(bad)[0])}: missing {col}.")
    return tokens


def _numbers(values: np.ndarray, name: str, col: str) -> np.ndarray:
    """A rating or timestamp column as float64 (datetimes become Unix seconds); NaN refused with its row."""
    if values.dtype.kind == "M":
        out = values.astype("datetime64[s]").astype(np.int64).astype(np.float64)
        out[np.isnat(values)] = np.nan
    else:
        try:
            out = values.astype(np.float64)
        except (TypeError, ValueError):
            raise DataError(f"{name}: column {col!r} is not numeric.") from None
    if not np.isfinite(out).all():
        raise DataError(f"{name}, row {int(np.flatnonzero(~np.isfinite(out))[0])}: missing or infinite {col}.")
    return out


def _table(frame: Any, name: str, user_col: str, item_col: str, rating_col: str, timestamp_col: str) -> RawTable:
    users = _id_tokens(_column(frame, user_col, name), name, user_col)
    items = _id_tokens(_column(frame, item_col, name), name, item_col)
    if users.shape != items.shape or users.ndim != 1:
        raise DataError(f"{name}: columns {user_col!r} and {item_col!r} must be 1-D and of one length.")
    keys = set(map(str, frame.keys()))
    extra = {k: _numbers(_column(frame, col, name), name, col)
             for k, col in (("rating", rating_col), ("timestamp", timestamp_col)) if col in keys}
    return RawTable(users, items, extra, name)


def from_frame(frame: Any, *, user_col: str = "user_id", item_col: str = "item_id", rating_col: str = "rating",
               timestamp_col: str = "timestamp", split: SplitOptions | None = None, valid_ratio: float = 0.1,
               seed: int = 0, name: str = "frame") -> Interactions:
    """:class:`Interactions` from a table of columns: a pandas DataFrame or any mapping of column name -> array.

    ``frame`` holds every interaction (one row each, raw user and item ids of any type; optional rating and
    timestamp columns, datetimes accepted) and is split by ``split`` (default: chronological 70 / 10 / 20 when it
    has timestamps, else random; ``mode: noisy`` keeps low ratings in train and valid); or it is a mapping
    ``{"train": frame, "test": frame[, "valid": frame]}`` of splits made elsewhere, a seeded ``valid_ratio`` of each
    user's train items becoming validation when ``valid`` is absent. Raw ids are kept (``user_ids``, ``item_ids``).
    """
    cols = dict(user_col=user_col, item_col=item_col, rating_col=rating_col, timestamp_col=timestamp_col)
    presplit = isinstance(frame, Mapping) and bool(set(frame)) and set(frame) <= set(SPLITS)
    if presplit:
        missing = [s for s in ("train", "test") if s not in frame]
        if missing:
            raise DataError(f"{name}: the splits need {' and '.join(missing)} too (or pass one frame to split it).")
        tables = {s: _table(f, f"{name} {s}", **cols) for s, f in frame.items()}
    else:
        tables = split_table(_table(frame, name, **cols), split or SplitOptions())
    return with_validation(tables_to_interactions(tables, name), valid_ratio, seed)
