"""Item metadata (titles, genres) for display: RecBole ``.item`` files, ``items.csv`` / ``.tsv``, ``u.item``."""

from __future__ import annotations

import logging
from pathlib import Path

from ..config.data import DataConfig
from ..data.registry import REGISTRY, default_data_root
from ..data.table import read_rows
from ..errors import DataError

logger = logging.getLogger(__name__)

TITLE_COLUMNS = ("title", "movie_title", "name", "item_name")
GENRE_COLUMNS = ("genres", "genre", "class", "categories", "category")
CANDIDATES = ("items.csv", "items.tsv", "item_metadata.csv", "u.item")


def find_item_metadata(cfg: DataConfig) -> Path | None:
    """A metadata file in the dataset's folder, if it has one."""
    path = Path(cfg.name)
    if not path.exists() and cfg.name in REGISTRY:
        path = Path(cfg.root or default_data_root()) / cfg.name
    folder = path if path.is_dir() else path.parent
    if not folder.is_dir():
        return None
    found = [folder / c for c in CANDIDATES if (folder / c).is_file()] + sorted(folder.glob("*.item"))
    return found[0] if found else None


def read_item_metadata(path: Path) -> dict[str, dict[str, str]]:
    """``{raw item id: {"title": ..., "genres": ...}}``; an unreadable file is an error naming it."""
    if path.name == "u.item":  # ml-100k: id|title|date|video date|url|19 genre flags
        genres = ("unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
                  "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
                  "War", "Western")
        try:
            rows = [ln.split("|") for ln in path.read_text(encoding="latin-1").splitlines() if ln.strip()]
        except OSError as exc:
            raise DataError(f"{path}: cannot read item metadata ({exc}).") from None
        return {r[0]: {"title": r[1], "genres": " ".join(g for g, f in zip(genres, r[5:], strict=False) if f == "1")}
                for r in rows if len(r) >= 2}
    sep = "," if path.suffix == ".csv" else "\t"
    rows = read_rows(path, sep)
    if not rows:
        raise DataError(f"{path}: empty item metadata file.")
    names = [h.split(":", 1)[0].strip() for h in rows[0]]
    if not names or names[0] not in ("item_id", "id", "item"):
        raise DataError(f"{path}: item metadata needs an item_id first column (found {names[0]!r}).")
    title = next((names.index(c) for c in TITLE_COLUMNS if c in names), None)
    genre = next((names.index(c) for c in GENRE_COLUMNS if c in names), None)
    out: dict[str, dict[str, str]] = {}
    for r in rows[1:]:
        entry = {}
        if title is not None and title < len(r):
            entry["title"] = r[title].strip()
        if genre is not None and genre < len(r):
            entry["genres"] = r[genre].strip()
        out[r[0].strip()] = entry
    return out
