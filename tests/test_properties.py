"""Property-based tests (hypothesis) for the metrics, full-ranking evaluation and the readers."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from ddrm.data.interactions import Interactions
from ddrm.data.readers import ReadOptions, read_dataset
from ddrm.evaluation import evaluate, metrics_from_hits

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def hit_matrices(draw):
    b = draw(st.integers(1, 8))
    k = draw(st.integers(1, 12))
    hits = draw(arrays(np.bool_, (b, k)))
    extra = draw(arrays(np.int64, (b,), elements=st.integers(0, 5)))
    n_truth = hits.sum(1) + extra
    n_truth[n_truth == 0] = 1
    return torch.from_numpy(hits), torch.from_numpy(n_truth), k


@SETTINGS
@given(hit_matrices())
def test_metrics_stay_in_unit_interval(case):
    hits, n_truth, k = case
    out = metrics_from_hits(hits, n_truth, [1, k])
    for name, v in out.items():
        assert torch.all(v >= 0) and torch.all(v <= 1 + 1e-12), name


@SETTINGS
@given(st.integers(1, 30), st.integers(1, 20))
def test_perfect_ranking_scores_one(n, k):
    hits = torch.zeros(1, k, dtype=torch.bool)
    hits[0, : min(n, k)] = True
    out = metrics_from_hits(hits, torch.tensor([n]), [k])
    assert float(out[f"ndcg@{k}"][0]) == 1.0
    assert float(out[f"recall@{k}"][0]) == min(n, k) / n
    assert float(out[f"hit@{k}"][0]) == 1.0 and float(out[f"mrr@{k}"][0]) == 1.0


@st.composite
def datasets(draw):
    n_users = draw(st.integers(2, 12))
    n_items = draw(st.integers(3, 15))
    train = draw(arrays(np.bool_, (n_users, n_items)))
    train[:, 0] |= ~train.any(1)  # everybody has a training item
    test = draw(arrays(np.bool_, (n_users, n_items))) & ~train
    return train, test


def _interactions(train: np.ndarray, test: np.ndarray) -> Interactions:
    tu, ti = np.nonzero(train)
    su, si = np.nonzero(test)
    return Interactions.from_pairs({"train": (tu, ti), "test": (su, si)}, *train.shape)


class Table:
    """A scorer over a fixed score matrix [n_users, n_items]."""

    def __init__(self, scores: np.ndarray) -> None:
        self.scores = torch.from_numpy(scores)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


@SETTINGS
@given(datasets(), st.integers(0, 2**31 - 1))
def test_evaluation_properties(mats, seed):
    train, test = mats
    if not test.any():
        return
    data = _interactions(train, test)
    rng = np.random.default_rng(seed)
    scores = rng.random(train.shape).astype(np.float32)
    ks = [1, 3, 5]
    res = evaluate(Table(scores), data, "test", ks)
    for name, v in res.metrics.items():
        assert 0.0 <= v <= 1.0 + 1e-9, name
    # permuting (and shuffling the order of) the evaluated users does not change the mean
    users = rng.permutation(res.users)
    again = evaluate(Table(scores), data, "test", ks, users=users, batch_size=int(rng.integers(1, 4)))
    for name, v in res.metrics.items():
        assert abs(v - again.metrics[name]) < 1e-12, name
    # relevant items ranked first: ndcg = 1 and recall = min(n, K) / n for every user
    perfect = evaluate(Table(test.astype(np.float32) + 0.01 * scores), data, "test", ks)
    n = test[res.users].sum(1)
    for k in ks:
        assert abs(perfect.metrics[f"ndcg@{k}"] - 1.0) < 1e-9
        assert abs(perfect.metrics[f"recall@{k}"] - float(np.mean(np.minimum(n, k) / n))) < 1e-9


tokens = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789_-", min_size=1, max_size=6)


@st.composite
def raw_pairs(draw):
    users = draw(st.lists(tokens, min_size=1, max_size=6, unique=True))
    items = draw(st.lists(tokens, min_size=2, max_size=8, unique=True))
    pairs = draw(st.sets(st.tuples(st.sampled_from(users), st.sampled_from(items)), min_size=1, max_size=30))
    return sorted(pairs)


def _pairs(data: Interactions, split: str) -> set[tuple[str, str]]:
    u, i = data.pairs(split)
    return {(str(data.raw_user(int(a))), str(data.raw_item(int(b)))) for a, b in zip(u, i, strict=True)}


@SETTINGS
@given(raw_pairs(), raw_pairs(), st.sampled_from([",", "\t"]))
def test_csv_round_trip(train, test, sep):
    ext = ".csv" if sep == "," else ".tsv"
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, pairs in (("train", train), ("test", test)):
            (folder / f"{name}{ext}").write_text(
                f"user_id{sep}item_id\n" + "".join(f"{u}{sep}{i}\n" for u, i in pairs))
        data = read_dataset(folder, ReadOptions(valid_ratio=0.5))
    got = _pairs(data, "train") | _pairs(data, "valid")
    assert got == set(train)
    assert _pairs(data, "test") == set(test)


@SETTINGS
@given(arrays(np.bool_, st.tuples(st.integers(1, 8), st.integers(2, 10))))
def test_lightgcn_lines_round_trip(train):
    train[:, 0] |= ~train.any(1)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines = [" ".join([str(u), *map(str, np.flatnonzero(row))]) for u, row in enumerate(train)]
        (folder / "train.txt").write_text("\n".join(lines) + "\n")
        (folder / "test.txt").write_text("0 0\n")
        (folder / "valid.txt").write_text("0 0\n")
        data = read_dataset(folder)
    u, i = data.pairs("train")
    assert set(zip(u.tolist(), i.tolist(), strict=True)) == set(zip(*map(np.ndarray.tolist, np.nonzero(train)),
                                                                    strict=True))
