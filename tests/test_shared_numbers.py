"""Cross-checks of the evaluation protocol against independently measured numbers on ml-1m_noisy."""

from __future__ import annotations

import pytest

from ddrm.baselines import EASE, MostPop
from ddrm.data import load_dataset
from ddrm.evaluation import evaluate

from .conftest import require_shared


@pytest.fixture(scope="module")
def ml1m():
    return load_dataset("ml-1m_noisy", root=require_shared("data"))


def test_mostpop_recall(ml1m):
    r = evaluate(MostPop().fit(ml1m), ml1m, "test", (20,)).metrics
    assert r["recall@20"] == pytest.approx(0.0896, abs=0.002)


def test_ease_recall_ndcg(ml1m):
    r = evaluate(EASE(reg=1000).fit(ml1m), ml1m, "test", (20,)).metrics
    assert r["recall@20"] >= 0.133 and r["ndcg@20"] >= 0.073
