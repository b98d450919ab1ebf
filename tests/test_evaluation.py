from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddrm.evaluation import evaluate, evaluate_variants, metrics_from_hits


class FixedScorer:
    def __init__(self, scores: np.ndarray):
        self.scores = torch.as_tensor(scores, dtype=torch.float32)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.scores[users]


def test_hand_computed_single_user():
    # ranking hits at ranks 1 and 3, 4 relevant items, K = 3
    hits = torch.tensor([[1, 0, 1]], dtype=torch.bool)
    m = metrics_from_hits(hits, torch.tensor([4]), [3])
    assert m["recall@3"].item() == pytest.approx(2 / 4)
    assert m["precision@3"].item() == pytest.approx(2 / 3)
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    idcg = 1 / math.log2(2) + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@3"].item() == pytest.approx(dcg / idcg)
    assert m["mrr@3"].item() == pytest.approx(1.0)
    assert m["hit@3"].item() == 1.0


def test_first_hit_and_no_hit():
    hits = torch.tensor([[0, 0, 1, 0], [0, 0, 0, 0]], dtype=torch.bool)
    m = metrics_from_hits(hits, torch.tensor([1, 2]), [2, 4])
    assert m["mrr@2"].tolist() == [0.0, 0.0]
    assert m["mrr@4"].tolist() == pytest.approx([1 / 3, 0.0])
    assert m["hit@4"].tolist() == [1.0, 0.0]
    # one relevant item at rank 3: ndcg = (1/log2 4) / 1
    assert m["ndcg@4"][0].item() == pytest.approx(1 / math.log2(4))
    # recall divides by |truth|, not min(K, |truth|)
    assert m["recall@4"][0].item() == pytest.approx(1.0)


def _naive(scores, train, truth, ks):
    """A per-user loop straight from the definitions."""
    out = {f"{m}@{k}": [] for k in ks for m in ("recall", "ndcg", "precision", "mrr", "hit")}
    for u in range(scores.shape[0]):
        rel = set(np.flatnonzero(truth[u]))
        if not rel:
            continue
        s = scores[u].astype(np.float64).copy()
        s[train[u] > 0] = -np.inf
        order = np.argsort(-s, kind="stable")
        for k in ks:
            top = order[:k]
            hits = [1 if i in rel else 0 for i in top]
            out[f"recall@{k}"].append(sum(hits) / len(rel))
            out[f"precision@{k}"].append(sum(hits) / k)
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(rel), k)))
            out[f"ndcg@{k}"].append(dcg / idcg)
            first = next((r + 1 for r, h in enumerate(hits) if h), None)
            out[f"mrr@{k}"].append(1 / first if first else 0.0)
            out[f"hit@{k}"].append(float(any(hits)))
    return {k: float(np.mean(v)) for k, v in out.items()}


def test_matches_naive_loop_on_random_data(random_data):
    rng = np.random.default_rng(1)
    scores = rng.random((random_data.n_users, random_data.n_items)).astype(np.float32)
    ks = (1, 5, 10, 20)
    for split in ("valid", "test"):
        res = evaluate(FixedScorer(scores), random_data, split, ks, batch_size=7)
        naive = _naive(scores, random_data.seen(split).toarray(), random_data.split(split).toarray(), ks)
        for key, value in naive.items():
            assert res.metrics[key] == pytest.approx(value, abs=1e-9), key


def test_masking_and_perfect_ranking(checkerboard):
    # the ideal scorer ranks truth first; seen items get the highest raw score but must be masked
    truth = checkerboard.test.toarray()
    seen = checkerboard.seen("test").toarray()
    scores = truth * 1.0 + seen * 10.0
    res = evaluate(FixedScorer(scores), checkerboard, "test", ks=(1, 5))
    assert res.metrics["recall@1"] == 1.0
    assert res.metrics["ndcg@5"] == pytest.approx(1.0)
    assert res.metrics["mrr@5"] == 1.0
    assert res.users.size == checkerboard.n_users


def test_per_user_mean_equals_metrics(random_data):
    scores = np.random.default_rng(2).random((random_data.n_users, random_data.n_items))
    res = evaluate(FixedScorer(scores), random_data, "test", (10,), per_user=True)
    assert res.per_user["ndcg@10"].mean() == pytest.approx(res.metrics["ndcg@10"])
    assert res.per_user["recall@10"].shape == res.users.shape


def test_variants_in_one_pass_equal_separate_evaluations(random_data):
    rng = np.random.default_rng(3)
    tables = [rng.random((random_data.n_users, random_data.n_items)).astype(np.float32) for _ in range(3)]
    scorers = [FixedScorer(t) for t in tables]
    many = evaluate_variants(lambda u: (s.score(u) for s in scorers), 3, random_data, "valid", (5, 10),
                             batch_size=6, per_user=True)
    for scorer, res in zip(scorers, many, strict=True):
        one = evaluate(scorer, random_data, "valid", (5, 10), batch_size=6, per_user=True)
        assert res.metrics == one.metrics and np.array_equal(res.users, one.users)
        assert all(np.array_equal(res.per_user[k], one.per_user[k]) for k in one.per_user)
    assert many[0].metrics != many[1].metrics
    with pytest.raises(ValueError, match="expected 3"):
        evaluate_variants(lambda u: (s.score(u) for s in scorers[:2]), 3, random_data, "valid", (5,))


def test_users_without_truth_are_not_counted(checkerboard):
    scores = np.random.default_rng(0).random((checkerboard.n_users, checkerboard.n_items))
    res = evaluate(FixedScorer(scores), checkerboard, "test", (5,), users=np.array([0, 1, 2]))
    assert res.users.tolist() == [0, 1, 2]


def test_noise_auc_against_pairwise_definition():
    from ddrm.evaluation import noise_auc

    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, 40).astype(float)  # ties on purpose
    noise = rng.random(40) < 0.3
    clean, noisy = scores[~noise], scores[noise]
    pairwise = np.mean([(c > n) + 0.5 * (c == n) for c in clean for n in noisy])
    assert noise_auc(scores, noise) == pytest.approx(pairwise)
    assert noise_auc(np.array([3.0, 2.0, 1.0]), np.array([False, False, True])) == 1.0
    assert np.isnan(noise_auc(np.array([1.0]), np.array([True])))
