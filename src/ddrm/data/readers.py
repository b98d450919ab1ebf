"""Readers for the published formats; the format is detected from a folder's files.

Formats
-------
diffrec    ``{train,valid,test}_list.npy``: int arrays [n, 2] of 0-based (user, item)
lightgcn   ``train.txt`` / ``test.txt`` [/ ``valid.txt``]: lines ``user item item ...``
recbole    atomic ``name.inter`` (split here) or pre-split ``name.{train,valid,test}.inter``, typed header
csv        ``.csv`` / ``.tsv`` with a header row; columns mapped by name (single file split here, or
           ``train.csv`` / ``valid.csv`` / ``test.csv``)
movielens  raw ``ratings.dat`` (``::``) or ``u.data`` (tab), split here
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from ..config.data import ReadOptions
from ..errors import ConfigError, DataError
from .interactions import SPLITS, Interactions
from .preprocess import split_table, tables_to_interactions, with_validation
from .table import RawTable, check_ids, iter_row_chunks, read_columns, read_rows, to_float

logger = logging.getLogger(__name__)

FORMATS = ("diffrec", "lightgcn", "recbole", "csv", "movielens")


def detect_format(path: Path) -> str:
    """Name of the format of a dataset folder or file."""
    if path.is_file():
        name = path.name
        if name.endswith(".inter"):
            return "recbole"
        if name.endswith((".csv", ".tsv")):
            return "csv"
        if name in ("ratings.dat", "u.data"):
            return "movielens"
        raise DataError(f"{path}: cannot tell the format of this file; pass --format ({', '.join(FORMATS)}).")
    if not path.is_dir():
        raise DataError(f"{path}: no such file or folder.")
    names = {p.name for p in path.iterdir()}
    if "train_list.npy" in names:
        return "diffrec"
    if "train.txt" in names:
        return "lightgcn"
    if any(n.endswith(".inter") for n in names):
        return "recbole"
    if "ratings.dat" in names or "u.data" in names:
        return "movielens"
    if any(n.endswith((".csv", ".tsv")) for n in names):
        return "csv"
    raise DataError(f"{path}: no dataset files found (expected train_list.npy, train.txt, *.inter, ratings.dat, "
                    f"u.data or *.csv).")


def read_dataset(path: str | Path, options: ReadOptions | None = None) -> Interactions:
    """Read a dataset folder (or single file) into :class:`Interactions`."""
    opts = options or ReadOptions()
    path = Path(path)
    fmt = opts.format or detect_format(path)
    readers = {"diffrec": _read_diffrec, "lightgcn": _read_lightgcn, "recbole": _read_recbole,
               "csv": _read_csv, "movielens": _read_movielens}
    if fmt not in readers:
        raise ConfigError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}.")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder.")
    return with_validation(readers[fmt](path, opts), opts.valid_ratio, opts.seed)


def _need(folder: Path, name: str) -> Path:
    p = folder / name
    if not p.is_file():
        raise DataError(f"{folder}: missing split file {name}.")
    return p


# ---------------------------------------------------------------------------------------------- index formats
def _read_npy_pairs(path: Path) -> np.ndarray:
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except (ValueError, EOFError, OSError) as exc:
        raise DataError(f"{path}: not a valid .npy array file ({str(exc).splitlines()[0]}).") from None
    if arr.ndim != 2 or arr.shape[1] < 2:
        raise DataError(f"{path}: expected an array of shape [n, 2] of (user, item) ids, got shape {arr.shape}.")
    if not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.isfinite(arr).all() and (arr == np.round(arr)).all():
            arr = arr.astype(np.int64)
        else:
            raise DataError(f"{path}: ids must be integers, got dtype {arr.dtype}.")
    if arr.size and arr[:, :2].min() < 0:
        row = int(np.flatnonzero((arr[:, :2] < 0).any(axis=1))[0])
        raise DataError(f"{path}: row {row} has a negative id ({arr[row, 0]}, {arr[row, 1]}).")
    return arr[:, :2].astype(np.int64)


def _read_diffrec(folder: Path, opts: ReadOptions) -> Interactions:
    if folder.is_file():
        raise DataError(f"{folder}: the diffrec format is a folder with train_list.npy, valid_list.npy, test_list.npy.")
    splits = {"train": _read_npy_pairs(_need(folder, "train_list.npy")),
              "test": _read_npy_pairs(_need(folder, "test_list.npy"))}
    if (folder / "valid_list.npy").is_file():
        splits["valid"] = _read_npy_pairs(folder / "valid_list.npy")
    if splits["train"].size == 0:
        raise DataError(f"{folder / 'train_list.npy'}: contains no interactions.")
    return Interactions.from_pairs({s: (a[:, 0], a[:, 1]) for s, a in splits.items()}, name=folder.name)


def _read_lines(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse ``user item item ...`` lines, streamed in chunks; a line with a user alone means no items.

    Returns (users, items) int64 arrays [n].
    """
    users, items, seen = [], [], False
    for lines, rows in iter_row_chunks(path, None):
        seen = seen or bool(rows)
        counts = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
        try:
            ids = np.array([t for r in rows for t in r], dtype=np.int64)
        except (ValueError, OverflowError):
            for k, r in enumerate(rows):
                for t in r:
                    try:
                        if not -(2**63) <= int(t) < 2**63:
                            raise OverflowError
                    except (ValueError, OverflowError):
                        raise DataError(f"{path}, line {int(lines[k])}: {t!r} is not an integer id "
                                        f"(or is beyond 64 bits).") from None
            raise
        neg = np.flatnonzero(ids < 0)
        if neg.size:
            line = int(lines[int(np.searchsorted(np.cumsum(counts), neg[0], side="right"))])
            raise DataError(f"{path}, line {line}: negative id {ids[neg[0]]}.")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
        users.append(np.repeat(ids[starts], counts - 1))
        is_item = np.ones(ids.size, dtype=bool)
        is_item[starts] = False
        items.append(ids[is_item])
    if not seen:
        raise DataError(f"{path}: empty file.")
    return np.concatenate(users), np.concatenate(items)


def _id_map(path: Path) -> np.ndarray | None:
    """The ``org_id`` column of a LightGCN/KGAT ``user_list.txt`` / ``item_list.txt`` (ordered by remap_id)."""
    if not path.is_file():
        return None
    rows = read_rows(path, None)[1:]
    try:
        remap = np.array([int(r[1]) for r in rows], dtype=np.int64)
    except (ValueError, IndexError):
        logger.warning("%s: unreadable id map, raw ids not loaded", path)
        return None
    out = np.empty(remap.size, dtype=object)
    if remap.size and (remap.min() < 0 or remap.max() >= remap.size or np.unique(remap).size != remap.size):
        logger.warning("%s: remap ids are not a permutation, raw ids not loaded", path)
        return None
    out[remap] = [r[0] for r in rows]
    return out.astype(str)


def _read_lightgcn(folder: Path, opts: ReadOptions) -> Interactions:
    if folder.is_file():
        raise DataError(f"{folder}: the lightgcn format is a folder with train.txt and test.txt.")
    splits = {"train": _read_lines(_need(folder, "train.txt")), "test": _read_lines(_need(folder, "test.txt"))}
    if (folder / "valid.txt").is_file():
        splits["valid"] = _read_lines(folder / "valid.txt")
    if splits["train"][0].size == 0:
        raise DataError(f"{folder / 'train.txt'}: contains no interactions.")
    data = Interactions.from_pairs(splits, name=folder.name)
    user_ids, item_ids = _id_map(folder / "user_list.txt"), _id_map(folder / "item_list.txt")
    if user_ids is not None and len(user_ids) == data.n_users:
        data.user_ids = user_ids
    if item_ids is not None and len(item_ids) == data.n_items:
        data.item_ids = item_ids
    return data


# ---------------------------------------------------------------------------------------------- token formats
def _table_with_header(path: Path, sep: str | None, opts: ReadOptions, typed: bool, allow_empty: bool = False
                       ) -> RawTable:
    """Read a delimited file whose first row names the columns (RecBole ``name:type`` or plain CSV names).

    A header-only file is an error unless ``allow_empty`` (a valid / test split may be empty; a warning says so).
    """
    found: dict[str, list[str]] = {}

    def pick(header: list[str] | None) -> dict[str, int]:
        names = [h.split(":", 1)[0] if typed else h for h in header or []]
        found["names"] = names
        idx = {}
        for key, col in (("user", opts.user_col), ("item", opts.item_col)):
            if col not in names:
                hint = ""
                if len(names) == 1 and any(d in (header or [""])[0] for d in (",", "\t", ";", "|", " ")):
                    hint = " (wrong delimiter? set data.read.sep)"
                raise DataError(f"{path}: no column {col!r} in the header (columns: {', '.join(names)}){hint}.")
            idx[key] = names.index(col)
        for key, col in (("rating", opts.rating_col), ("timestamp", opts.timestamp_col), ("noise", "noise")):
            if col in names:
                idx[key] = names.index(col)
        return idx

    def convert(cols: dict[str, np.ndarray], lines: np.ndarray) -> dict[str, np.ndarray]:
        out = {"user": check_ids(cols["user"], path, opts.user_col, lines),
               "item": check_ids(cols["item"], path, opts.item_col, lines)}
        if "noise" in cols:
            out["noise"] = to_float(cols["noise"], path, "noise", lines)
        injected = out["noise"] == 1 if "noise" in out else None
        out.update({k: to_float(cols[k], path, k, lines, injected, dates=k == "timestamp")
                    for k in ("rating", "timestamp") if k in cols})
        return out

    _, cols, lines = read_columns(path, sep, pick, header=True, convert=convert)
    if not lines.size and not allow_empty:
        raise DataError(f"{path}: has a header but no interactions.")
    if not lines.size:
        logger.warning("%s: has a header but no interactions; this split is empty", path)
    user, item = cols.pop("user"), cols.pop("item")
    return RawTable(user, item, {k: v.astype(np.float64) for k, v in cols.items()}, str(path))


def _split_or_presplit(files: dict[str, Path], single: Path | None, read, opts: ReadOptions, name: str) -> Interactions:
    if files:
        if "train" not in files or "test" not in files:
            missing = [s for s in ("train", "test") if s not in files]
            raise DataError(f"{name}: missing split file for {', '.join(missing)}.")
        tables = {s: read(p, s != "train") for s, p in files.items()}
    else:
        assert single is not None
        tables = split_table(read(single), opts.split)
    return tables_to_interactions(tables, name)


def _read_recbole(path: Path, opts: ReadOptions) -> Interactions:
    def read(p: Path, allow_empty: bool = False) -> RawTable:
        return _table_with_header(p, opts.sep or "\t", opts, typed=True, allow_empty=allow_empty)

    if path.is_file():
        return _split_or_presplit({}, path, read, opts, path.stem)
    presplit = {s: p for s in SPLITS for p in sorted(path.glob(f"*.{s}.inter"))}
    singles = [p for p in sorted(path.glob("*.inter")) if not any(p.name.endswith(f".{s}.inter") for s in SPLITS)]
    if not presplit and len(singles) != 1:
        raise DataError(f"{path}: expected one name.inter file or name.{{train,valid,test}}.inter files.")
    return _split_or_presplit(presplit, singles[0] if singles else None, read, opts, path.name)


def _read_csv(path: Path, opts: ReadOptions) -> Interactions:
    def read(p: Path, allow_empty: bool = False) -> RawTable:
        sep = opts.sep or ("\t" if p.suffix == ".tsv" else ",")
        return _table_with_header(p, sep, opts, typed=False, allow_empty=allow_empty)

    if path.is_file():
        return _split_or_presplit({}, path, read, opts, path.stem)
    presplit = {s: p for s in SPLITS for ext in (".csv", ".tsv") for p in [path / f"{s}{ext}"] if p.is_file()}
    singles = sorted(p for p in path.iterdir() if p.suffix in (".csv", ".tsv"))
    if not presplit and len(singles) != 1:
        raise DataError(f"{path}: expected one .csv/.tsv file or train/valid/test.csv files.")
    return _split_or_presplit(presplit, singles[0] if singles else None, read, opts, path.name)


def read_movielens_table(path: Path) -> RawTable:
    """A raw ``ratings.dat`` (``::``) or ``u.data`` (tab) file as a :class:`RawTable`, streamed in one pass."""
    sep = "::" if path.name.endswith(".dat") else "\t"

    def convert(cols: dict[str, np.ndarray], lines: np.ndarray) -> dict[str, np.ndarray]:
        return {"user": check_ids(cols["user"], path, "user id", lines),
                "item": check_ids(cols["item"], path, "item id", lines),
                **{k: to_float(cols[k], path, k, lines, dates=k == "timestamp") for k in ("rating", "timestamp")}}

    _, cols, lines = read_columns(path, sep, lambda _: {"user": 0, "item": 1, "rating": 2, "timestamp": 3},
                                  header=False, convert=convert)
    if not lines.size:
        raise DataError(f"{path}: empty file.")
    return RawTable(cols["user"], cols["item"], {k: cols[k] for k in ("rating", "timestamp")}, str(path))


def _read_movielens(path: Path, opts: ReadOptions) -> Interactions:
    if path.is_dir():
        path = path / "ratings.dat" if (path / "ratings.dat").is_file() else path / "u.data"
    return tables_to_interactions(split_table(read_movielens_table(path), opts.split), path.parent.name)
