"""Parsing delimited text into columns, with errors that name the file and line."""

from __future__ import annotations

import csv
import itertools
from collections.abc import Callable, Iterator
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


CHUNK_LINES = 1 << 18
QUOTED_SEPARATORS = (",", ";")  # CSV-style files may quote fields; tab / :: / whitespace files are split plainly


def iter_row_chunks(path: Path, sep: str | None, chunk_lines: int = CHUNK_LINES
                    ) -> Iterator[tuple[np.ndarray, list[list[str]]]]:
    """Stream a delimited text file once, in chunks: ``(line numbers [m], rows)`` of its non-blank rows.

    ``sep``: ``,`` or ``;`` (csv quoting rules), any other string (plain split: tab, ``::``) or ``None`` (whitespace).
    Memory is bounded by ``chunk_lines``; callers convert each chunk to numpy arrays before reading the next.
    """
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            lineno = 0
            while True:
                lines = list(itertools.islice(fh, chunk_lines))
                if not lines:
                    return
                if sep in QUOTED_SEPARATORS:
                    split = list(csv.reader(lines, delimiter=sep))
                else:
                    split = [ln.split(sep) for ln in lines]
                keep = [k for k, r in enumerate(split) if len(r) > 1 or (r and r[0].strip())]
                rows = split if len(keep) == len(split) else [split[k] for k in keep]
                yield lineno + 1 + np.asarray(keep, dtype=np.int64), rows
                lineno += len(lines)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found.") from None
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a UTF-8 text file (binary or wrongly encoded data).") from None
    except csv.Error as exc:
        raise DataError(f"{path}: malformed delimited text ({exc}).") from None


def read_rows(path: Path, sep: str | None) -> list[list[str]]:
    """All non-blank rows of a (small) delimited text file; large files go through :func:`read_columns`."""
    return [r for _, rows in iter_row_chunks(path, sep) for r in rows]


Convert = Callable[[dict[str, np.ndarray], np.ndarray], dict[str, np.ndarray]]


def read_columns(path: Path, sep: str | None, pick: Callable[[list[str] | None], dict[str, int]], header: bool,
                 convert: Convert | None = None) -> tuple[list[str] | None, dict[str, np.ndarray], np.ndarray]:
    """Stream a file once and keep only the picked columns, converted chunk by chunk.

    ``pick(header_row)`` maps column names to indices (``header_row`` is None when ``header`` is False);
    ``convert(columns, line_numbers)`` turns one chunk's str columns into their final arrays (numbers, checked ids)
    and raises :class:`DataError` naming the line of a bad value. Returns (header row, ``{name: array [n]}``, line
    numbers [n]). Never holds the whole file as Python strings: peak memory is one chunk plus the final columns.
    """
    head: list[str] | None = None
    idx: dict[str, int] | None = None
    parts: dict[str, list[np.ndarray]] = {}
    line_parts: list[np.ndarray] = []
    for lines, rows in iter_row_chunks(path, sep):
        if idx is None:
            if header:
                head, lines, rows = [h.strip() for h in rows[0]], lines[1:], rows[1:]
            idx = pick(head)
            parts = {name: [] for name in idx}
        if not rows:
            continue
        cols = columns_from_rows(rows, path, idx, lines)
        if convert is not None:
            cols = convert(cols, lines)
        for name, values in cols.items():
            parts[name].append(values)
        line_parts.append(lines)
    if idx is None:
        raise DataError(f"{path}: empty file.")
    columns = {}
    for name in list(parts):  # one column at a time, freeing its chunks: peak = chunks + one column
        chunks = parts.pop(name)
        columns[name] = np.concatenate(chunks) if chunks else np.zeros(0, dtype=str)
        del chunks
    return head, columns, np.concatenate(line_parts) if line_parts else np.zeros(0, dtype=np.int64)


def to_float(values: np.ndarray, path: Path, column: str, lines: np.ndarray,
             nan_ok: np.ndarray | None = None, dates: bool = False) -> np.ndarray:
    """Convert a str column [n] to float64, naming the first bad line on failure.

    NaN is rejected except on rows where ``nan_ok`` is True (injected noise has no rating or timestamp). With
    ``dates``, ISO-8601 dates/times (``2020-01-31``, ``2020-01-31T12:00:00``) are accepted and become Unix seconds.
    """
    values = np.asarray(values, dtype=str)
    try:
        out = values.astype(np.float64)
    except ValueError:
        out = None
        if dates:
            try:
                out = values.astype("datetime64[s]").astype(np.int64).astype(np.float64)
            except ValueError:
                out = None
    bad = None
    if out is None:
        for k, v in enumerate(values):
            try:
                float(v)
            except ValueError:
                bad = k
                break
    else:
        nan = np.isnan(out) & ~(nan_ok if nan_ok is not None else False)
        bad = int(np.flatnonzero(nan)[0]) if nan.any() else None
    if bad is not None:
        kind = "a number or an ISO date" if dates else "a number"
        raise DataError(f"{path}, line {int(lines[bad])}: {column} value {values[bad].strip()!r} is not {kind}.")
    return out


def columns_from_rows(rows: list[list[str]], path: Path, names: dict[str, int], lines: np.ndarray
                      ) -> dict[str, np.ndarray]:
    """Pick columns by index from rows as str arrays, checking every row is wide enough."""
    need = max(names.values()) + 1
    if not rows:
        return {name: np.zeros(0, dtype=str) for name in names}
    widths = np.fromiter((len(r) for r in rows), dtype=np.int64, count=len(rows))
    short = np.flatnonzero(widths < need)
    if short.size:
        k = int(short[0])
        raise DataError(f"{path}, line {int(lines[k])}: expected at least {need} columns, found {widths[k]} "
                        f"(wrong delimiter?).")
    return {name: np.char.strip(np.asarray([r[j] for r in rows], dtype=str)) for name, j in names.items()}


def check_ids(values: np.ndarray, path: Path, column: str, lines: np.ndarray) -> np.ndarray:
    """Raw id tokens as a str array; empty tokens are rejected with their line."""
    arr = np.asarray(values, dtype=str)
    empty = np.flatnonzero(arr == "")
    if empty.size:
        raise DataError(f"{path}, line {int(lines[int(empty[0])])}: empty {column}.")
    return arr
