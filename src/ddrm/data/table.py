"""Parsing delimited text into columns, with errors that name the file and line."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError


@dataclass
class RawTable:
    """Interactions with raw (string) ids, before any split or remapping.

    users, items : str arrays of shape [n]; extra : float columns of shape [n] (rating, timestamp, noise, ...)
    """

    users: np.ndarray
    items: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return int(self.users.size)

    def take(self, mask_or_index: np.ndarray) -> RawTable:
        return RawTable(self.users[mask_or_index], self.items[mask_or_index],
                        {k: v[mask_or_index] for k, v in self.extra.items()}, self.source)

    @staticmethod
    def concat(tables: list[RawTable]) -> RawTable:
        keys = set.intersection(*(set(t.extra) for t in tables)) if tables else set()
        return RawTable(np.concatenate([t.users for t in tables]), np.concatenate([t.items for t in tables]),
                        {k: np.concatenate([t.extra[k] for t in tables]) for k in sorted(keys)},
                        ",".join(t.source for t in tables))


def read_rows(path: Path, sep: str) -> list[list[str]]:
    """All non-blank rows of a delimited text file, split on ``sep`` (``None``: any whitespace)."""
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            if sep is not None and len(sep) == 1:
                rows = [r for r in csv.reader(fh, delimiter=sep) if r and any(c.strip() for c in r)]
            else:
                rows = [ln.split(sep) for ln in fh.read().splitlines() if ln.strip()]
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file (binary or wrongly encoded data).") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed delimited text ({exc}).") from None
    return rows


def to_float(values: list[str], path: Path, column: str, first_line: int,
             nan_ok: np.ndarray | None = None) -> np.ndarray:
    """Convert a column of strings to float64, naming the first bad line on failure.

    NaN is rejected except on rows where ``nan_ok`` is True (injected noise has no rating or timestamp).
    """
    try:
        out = np.asarray(values, dtype=np.float64)
    except ValueError:
        out = None
    if out is None or (np.isnan(out) & ~(nan_ok if nan_ok is not None else False)).any():
        for k, v in enumerate(values):
            try:
                if np.isnan(float(v)) and not (nan_ok is not None and nan_ok[k]):
                    raise ValueError
            except ValueError:
                raise DataError(f"{path}, line {first_line + k}: {column} value {v.strip()!r} is not a number.") from None
    return out


def columns_from_rows(
    rows: list[list[str]], path: Path, names: dict[str, int], first_line: int
) -> dict[str, list[str]]:
    """Pick columns by index from rows, checking every row is wide enough."""
    need = max(names.values()) + 1
    if not rows:
        return {name: [] for name in names}
    widths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    short = np.flatnonzero(widths < need)
    if short.size:
        k = int(short[0])
        raise DataError(f"{path}, line {first_line + k}: expected at least {need} columns, found {widths[k]} "
                        f"(wrong delimiter?).")
    return {name: [r[j].strip() for r in rows] for name, j in names.items()}


def check_ids(values: list[str], path: Path, column: str, first_line: int) -> np.ndarray:
    """Raw id tokens as a str array; empty tokens are rejected with their line."""
    arr = np.asarray(values, dtype=str)
    empty = np.flatnonzero(arr == "")
    if empty.size:
        raise DataError(f"{path}, line {first_line + int(empty[0])}: empty {column}.")
    return arr
