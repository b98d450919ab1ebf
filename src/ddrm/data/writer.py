"""Write :class:`Interactions` as a RecBole pre-split dataset folder (raw ids and labels kept), atomically."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..io import atomic_dir
from .interactions import SPLITS, Interactions


def save_dataset(data: Interactions, folder: str | os.PathLike[str], name: str | None = None) -> Path:
    """Write ``name.{train,valid,test}.inter`` into ``folder`` (replaced only once complete)."""
    folder = Path(folder)
    name = name or folder.name
    with atomic_dir(folder) as tmp:
        for s in SPLITS:
            users, items = data.pairs(s)
            labels = data.labels.get(s, {})
            keys = sorted(labels)
            header = "\t".join(["user_id:token", "item_id:token", *(f"{k}:float" for k in keys)])
            cols = [data.raw_user(users), data.raw_item(items), *(np.asarray(labels[k]).astype(str) for k in keys)]
            with open(tmp / f"{name}.{s}.inter", "w", encoding="utf-8") as fh:
                fh.write(header + "\n")
                if users.size:
                    fh.write("\n".join("\t".join(row) for row in zip(*cols, strict=True)))
                    fh.write("\n")
    return folder
