"""Preprocessing: DiffRec-style natural-noise splits, validation carving, random-noise injection."""

from __future__ import annotations

import logging

import numpy as np

from ..config.data import SplitOptions
from ..errors import ConfigError, DataError
from .interactions import SPLITS, Interactions, build_csr
from .table import RawTable

logger = logging.getLogger(__name__)



def split_table(table: RawTable, opts: SplitOptions) -> dict[str, RawTable]:
    """Split one table of raw interactions into train / valid / test according to ``opts``."""
    opts.validate()
    if len(table) == 0:
        raise DataError(f"{table.source or 'the table'} contains no interactions.")
    method = opts.method
    has_ts = "timestamp" in table.extra
    if method == "auto":
        method = "chrono" if has_ts else "random"
    if method.startswith("chrono") and not has_ts:
        raise ConfigError(f"{table.source}: a chronological split needs a timestamp column; use the random split.")
    if opts.mode != "all" and "rating" not in table.extra:
        raise ConfigError(f"{table.source}: split mode {opts.mode!r} needs a rating column; use mode 'all'.")
    n = len(table)
    rng = np.random.default_rng(opts.seed)
    cuts = np.cumsum(opts.ratios)[:2]
    if method == "chrono":
        order = np.argsort(table.extra["timestamp"], kind="stable")
        pos = np.empty(n, dtype=np.float64)
        pos[order] = np.arange(n) / n
    elif method == "random":
        pos = np.empty(n, dtype=np.float64)
        pos[rng.permutation(n)] = np.arange(n) / n
    else:  # chrono-user: rank within each user by time
        _, user_idx = np.unique(table.users, return_inverse=True)
        order = np.lexsort((table.extra["timestamp"], user_idx))
        counts = np.bincount(user_idx)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        rank = np.arange(n) - np.repeat(starts, counts)
        pos = np.empty(n, dtype=np.float64)
        pos[order] = rank / np.repeat(counts, counts)
    which = np.searchsorted(cuts, pos, side="right")  # 0 train, 1 valid, 2 test
    parts = {s: table.take(which == k) for k, s in enumerate(SPLITS)}
    if opts.mode != "all":
        for s in (SPLITS if opts.mode == "clean" else ("test",)):
            parts[s] = parts[s].take(parts[s].extra["rating"] >= opts.threshold)
    if opts.drop_cold:
        tu, ti = np.unique(parts["train"].users), np.unique(parts["train"].items)
        for s in ("valid", "test"):
            p = parts[s]
            keep = np.isin(p.users, tu) & np.isin(p.items, ti)
            if (~keep).sum():
                logger.info("%s: dropped %d %s interactions of users/items unseen in train", table.source,
                            int((~keep).sum()), s)
            parts[s] = p.take(keep)
    for s, p in parts.items():
        if len(p) == 0:
            logger.warning("%s: the %s split is empty after splitting (method %s, mode %s)", table.source, s,
                           method, opts.mode)
    return parts


def _remap(tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Contiguous ids for raw tokens; numeric tokens are ordered numerically. Returns (vocab, inverse)."""
    vocab, inverse = np.unique(tokens, return_inverse=True)
    try:
        as_int = vocab.astype(np.int64)
        if (as_int.astype(str) == vocab).all():
            order = np.argsort(as_int, kind="stable")
            rank = np.empty_like(order)
            rank[order] = np.arange(order.size)
            return vocab[order], rank[inverse]
    except (ValueError, OverflowError):
        pass
    return vocab, inverse


def tables_to_interactions(tables: dict[str, RawTable], name: str) -> Interactions:
    """Remap raw ids of per-split tables to contiguous indices shared by all splits."""
    present = [s for s in SPLITS if s in tables]
    users, uinv = _remap(np.concatenate([tables[s].users for s in present]))
    items, iinv = _remap(np.concatenate([tables[s].items for s in present]))
    bounds = np.cumsum([0] + [len(tables[s]) for s in present])
    pairs, labels = {}, {}
    for k, s in enumerate(present):
        sl = slice(bounds[k], bounds[k + 1])
        pairs[s] = (uinv[sl], iinv[sl])
        if tables[s].extra:
            labels[s] = tables[s].extra
    return Interactions.from_pairs(pairs, len(users), len(items), labels, users, items, name)


def carve_validation(data: Interactions, ratio: float = 0.1, seed: int = 0) -> Interactions:
    """Move a seeded random ``ratio`` of each user's train items into a new validation split.

    Users keep at least one training item. Replaces any existing validation split.
    """
    if not 0.0 < ratio < 1.0:
        raise ConfigError(f"valid_ratio must be in (0, 1), got {ratio}.")
    users, items = data.pairs("train")
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(users.size), users))
    counts = np.diff(data.train.indptr)
    rank = np.empty(users.size, dtype=np.int64)
    rank[order] = np.arange(users.size) - np.repeat(data.train.indptr[:-1], counts)
    n_val = np.minimum(np.floor(ratio * counts + 0.5).astype(np.int64), np.maximum(counts - 1, 0))
    to_valid = rank < n_val[users]
    shape = (data.n_users, data.n_items)
    lab = data.labels.get("train", {})
    train, tl, _ = build_csr(users[~to_valid], items[~to_valid], shape, {k: v[~to_valid] for k, v in lab.items()})
    valid, vl, _ = build_csr(users[to_valid], items[to_valid], shape, {k: v[to_valid] for k, v in lab.items()})
    labels = {s: v for s, v in data.labels.items() if s == "test"}
    if tl:
        labels["train"], labels["valid"] = tl, vl
    logger.info("carved %d validation interactions (ratio %.2f, seed %d) out of train", valid.nnz, ratio, seed)
    return Interactions(train, valid, data.test, data.user_ids, data.item_ids, labels, data.name)


def with_validation(data: Interactions, ratio: float = 0.1, seed: int = 0) -> Interactions:
    """``data`` itself, or, when its validation split is empty (and train is not), with a seeded ``ratio`` of each
    user's train items carved out as validation (:func:`carve_validation`): how every reader treats data without
    a validation split."""
    return carve_validation(data, ratio, seed) if data.valid.nnz == 0 and data.train.nnz else data


def inject_noise(data: Interactions, ratio: float, seed: int = 0) -> Interactions:
    """Add ``round(ratio * nnz(train))`` uniformly random non-interacted (user, item) pairs to train.

    The pairs avoid every split (so no test positive becomes noise). The train labels gain ``noise``
    (1 for injected, earlier flags kept for the rest); other train labels are NaN for injected pairs.
    """
    if ratio < 0:
        raise ConfigError(f"noise ratio must be >= 0, got {ratio}.")
    n_new = int(round(ratio * data.train.nnz))
    users, items = data.pairs("train")
    labels = {k: np.asarray(v, dtype=np.float64) for k, v in data.labels.get("train", {}).items()}
    old_noise = labels.pop("noise", np.zeros(users.size))
    if n_new == 0:
        labels["noise"] = old_noise
        return data.with_train(data.train, labels)
    taken = (data.train + data.valid + data.test).tocsr()
    free = data.n_users * data.n_items - taken.nnz
    if n_new > free:
        raise ConfigError(f"cannot inject {n_new} noisy interactions: only {free} free (user, item) cells.")
    rng = np.random.default_rng(seed)
    occupied = np.unique(np.asarray(taken.nonzero()[0], np.int64) * data.n_items + taken.nonzero()[1])
    chosen = np.zeros(0, dtype=np.int64)
    while chosen.size < n_new:
        cand = rng.integers(0, data.n_users * data.n_items, size=2 * (n_new - chosen.size) + 16)
        cand = cand[~np.isin(cand, occupied)]
        cand = cand[np.sort(np.unique(cand, return_index=True)[1])]  # first occurrence, keep sampling order
        cand = cand[~np.isin(cand, chosen)]
        chosen = np.concatenate([chosen, cand[: n_new - chosen.size]])
    nu, ni = chosen // data.n_items, chosen % data.n_items
    all_labels = {k: np.concatenate([v, np.full(n_new, np.nan)]) for k, v in labels.items()}
    all_labels["noise"] = np.concatenate([old_noise, np.ones(n_new)])
    train, tl, _ = build_csr(np.concatenate([users, nu]), np.concatenate([items, ni]), data.train.shape, all_labels)
    logger.info("injected %d random noisy interactions (ratio %.2f, seed %d) into train", n_new, ratio, seed)
    return data.with_train(train, tl)
