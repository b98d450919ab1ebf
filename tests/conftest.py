from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ddrm.data import Interactions

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_DATA = SHARED / "data"


def require_shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not available")
    return path


@pytest.fixture
def checkerboard() -> Interactions:
    """Even users like even items, odd users odd items; one item of each user is held out for valid and test."""
    n_users, n_items = 8, 12
    splits = {"train": ([], []), "valid": ([], []), "test": ([], [])}
    for u in range(n_users):
        liked = [i for i in range(n_items) if i % 2 == u % 2]
        rot = liked[u // 2 % len(liked):] + liked[: u // 2 % len(liked)]
        for k, i in enumerate(rot):
            s = "test" if k == 0 else "valid" if k == 1 else "train"
            splits[s][0].append(u)
            splits[s][1].append(i)
    return Interactions.from_pairs({s: (np.array(a), np.array(b)) for s, (a, b) in splits.items()},
                                   n_users, n_items, name="checkerboard")


@pytest.fixture
def random_data() -> Interactions:
    rng = np.random.default_rng(0)
    n_users, n_items = 60, 40
    dense = rng.random((n_users, n_items))
    which = rng.integers(0, 3, size=(n_users, n_items))
    mask = dense < 0.3
    pairs = {s: np.nonzero(mask & (which == k)) for k, s in enumerate(("train", "valid", "test"))}
    return Interactions.from_pairs(pairs, n_users, n_items, name="random")
