"""Pure, vectorised, batched full-ranking evaluation.

Every item is ranked for every evaluated user; items the user already saw (train for ``valid``, train + valid for
``test``) are masked out. Metrics are computed from one [n_users, K] hit matrix per batch:

- ``recall@K``    = hits in top K / |truth|
- ``precision@K`` = hits in top K / K
- ``ndcg@K``      = DCG / IDCG with gains 1 / log2(rank + 1) and IDCG over min(|truth|, K) ideal hits
- ``mrr@K``       = 1 / rank of the first hit within K (0 if none)
- ``hit@K``       = 1 if any hit within K

and averaged over users with at least one ground-truth item.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import scipy.sparse as sp
import torch

from . import distributed
from .data.interactions import Interactions
from .errors import ConfigError

METRICS = ("recall", "ndcg", "precision", "mrr", "hit")
DEFAULT_KS = (10, 20, 50, 100)


class Scorer(Protocol):
    """Anything that scores all items for a batch of users."""

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores of shape [B, n_items] (higher is better) for int64 user indices of shape [B]."""
        ...


def rows_to_mask(m: sp.csr_matrix, users: np.ndarray, n_items: int, device: torch.device) -> torch.Tensor:
    """Dense bool [B, n_items] with True where ``m[users]`` has an entry (bounded by the batch size)."""
    sub = m[users]
    rows = np.repeat(np.arange(users.size), np.diff(sub.indptr))
    cols = sub.indices
    mask = torch.zeros(users.size, n_items, dtype=torch.bool, device=device)
    mask[torch.from_numpy(rows).to(device), torch.from_numpy(cols.astype(np.int64)).to(device)] = True
    return mask


def topk_from_scores(scores: torch.Tensor, exclude: torch.Tensor | None, k: int) -> torch.Tensor:
    """Indices [B, k] of the k best items per row, excluded items (bool mask [B, n_items]) never chosen."""
    if exclude is not None:
        scores = scores.masked_fill(exclude, -torch.inf)
    return torch.topk(scores, min(k, scores.shape[1]), dim=1).indices


def metrics_from_hits(hits: torch.Tensor, n_truth: torch.Tensor, ks: Sequence[int]) -> dict[str, torch.Tensor]:
    """Per-user metrics from a hit matrix.

    Parameters
    ----------
    hits : bool/float [B, Kmax], hits[b, r] = 1 if the item ranked r + 1 for user b is relevant
    n_truth : [B] number of relevant items per user (> 0)
    ks : cut-offs, each <= Kmax

    Returns
    -------
    dict ``"metric@K"`` -> float64 tensor [B]
    """
    hits = hits.to(torch.float64)
    n_truth = n_truth.to(torch.float64)
    kmax = hits.shape[1]
    ranks = torch.arange(1, kmax + 1, dtype=torch.float64, device=hits.device)
    disc = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(1)
    dcg = (hits * disc).cumsum(1)
    idcg_table = torch.cat([torch.zeros(1, dtype=torch.float64, device=hits.device), disc.cumsum(0)])
    first = torch.where(hits > 0, ranks, torch.full_like(hits, math.inf)).cummin(1).values
    out: dict[str, torch.Tensor] = {}
    for k in ks:
        kk = min(k, kmax)
        h = cum_hits[:, kk - 1]
        ideal = idcg_table[torch.clamp(n_truth, max=k).long()]
        out[f"recall@{k}"] = h / n_truth
        out[f"precision@{k}"] = h / k
        out[f"ndcg@{k}"] = dcg[:, kk - 1] / ideal
        out[f"mrr@{k}"] = 1.0 / first[:, kk - 1]
        out[f"hit@{k}"] = (h > 0).to(torch.float64)
    return out


@dataclass
class EvalResult:
    """Mean metrics (``{"recall@20": 0.12, ...}``), the evaluated users and, optionally, per-user values."""

    metrics: dict[str, float]
    users: np.ndarray
    per_user: dict[str, np.ndarray] | None = None


def evaluate(
    model: Scorer,
    data: Interactions,
    split: str = "test",
    ks: Sequence[int] = DEFAULT_KS,
    batch_size: int | None = None,
    users: np.ndarray | None = None,
    device: str | torch.device = "cpu",
    per_user: bool = False,
) -> EvalResult:
    """Full-ranking evaluation of ``model`` on ``split`` (``valid`` or ``test``).

    Parameters
    ----------
    model : has ``score(users: LongTensor[B]) -> Tensor[B, n_items]``
    data : the dataset; ground truth = ``data.split(split)``, masked = ``data.seen(split)``
    ks : cut-offs (default 10, 20, 50, 100)
    batch_size : users per batch (default: about 2**24 / n_items, so memory stays bounded)
    users : restrict to these users (default: every user with >= 1 ground-truth item)
    per_user : also return per-user metric arrays (for paired tests)

    Under torchrun the users are sharded across ranks and the metric sums all-reduced (not with ``per_user``).
    """
    return evaluate_variants(lambda u: (model.score(u),), 1, data, split, ks, batch_size, users, device,
                             per_user)[0]


def evaluate_variants(score_variants: Callable[[torch.Tensor], Iterable[torch.Tensor]], n_variants: int,
                      data: Interactions, split: str = "test", ks: Sequence[int] = DEFAULT_KS,
                      batch_size: int | None = None, users: np.ndarray | None = None,
                      device: str | torch.device = "cpu", per_user: bool = False) -> list[EvalResult]:
    """:func:`evaluate` of ``n_variants`` rankings in one pass over the users: ``score_variants(users [B])`` yields
    each variant's scores [B, n_items] in turn (e.g. several fusion weights of scores computed once per batch);
    only one variant's scores are held at a time. Returns one result per variant, in order."""
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 1:
        raise ConfigError(f"metric cut-offs must be positive integers, got {list(ks)}.")
    if split not in ("valid", "test"):
        raise ConfigError(f"can only evaluate on 'valid' or 'test', not {split!r}.")
    truth, seen = data.split(split), data.seen(split)
    n_truth_all = np.diff(truth.indptr)
    if users is None:
        users = np.flatnonzero(n_truth_all > 0)
    else:
        users = np.asarray(users, dtype=np.int64)
        users = users[n_truth_all[users] > 0]
    shard = distributed.active() and not per_user
    all_users = users
    if shard:  # under torchrun each rank ranks a strided share of the users
        users = distributed.shard(users)
    device = torch.device(device)
    n_items = data.n_items
    batch_size = batch_size or max(1, min(4096, 2**24 // max(n_items, 1)))
    kmax = min(ks[-1], n_items)
    keys = [f"{m}@{k}" for k in ks for m in METRICS]
    sums = [dict.fromkeys(keys, 0.0) for _ in range(n_variants)]
    collected: list[dict[str, list[np.ndarray]]] = [{key: [] for key in keys} for _ in range(n_variants)]
    with torch.no_grad():
        for lo in range(0, users.size, batch_size):
            batch = users[lo: lo + batch_size]
            mask = rows_to_mask(seen, batch, n_items, device)
            rel = rows_to_mask(truth, batch, n_items, device)
            n_truth = torch.from_numpy(n_truth_all[batch]).to(device)
            count = 0
            for v, scores in enumerate(score_variants(torch.from_numpy(batch).to(device))):
                top = topk_from_scores(scores.to(device=device, dtype=torch.float32), mask, kmax)
                values = metrics_from_hits(torch.gather(rel, 1, top), n_truth, ks)
                for key, val in values.items():
                    sums[v][key] += float(val.sum())
                    if per_user:
                        collected[v][key].append(val.cpu().numpy())
                count += 1
            if count != n_variants:
                raise ValueError(f"score_variants yielded {count} score tensors, expected {n_variants}.")
    n = users.size
    if shard:  # sums and counts over all ranks
        *totals, n = distributed.all_sum([*(x for s_ in sums for x in s_.values()), float(n)])
        sums = [dict(zip(keys, totals[v * len(keys):(v + 1) * len(keys)], strict=True)) for v in range(n_variants)]
        users = all_users
    out = []
    for v in range(n_variants):
        metrics = {key: sums[v][key] / max(n, 1) for key in keys}
        pu = {key: np.concatenate(c) if c else np.zeros(0) for key, c in collected[v].items()} if per_user else None
        out.append(EvalResult(metrics, users, pu))
    return out


def select_on_validation(model: Scorer, data: Interactions, choices: Sequence, use: Callable[[Any], None],
                         ks: Sequence[int], metric: str, batch_size: int | None = None,
                         device: str | torch.device = "cpu") -> tuple[Any, dict[Any, float]]:
    """Try each of ``choices`` (applied to ``model`` by ``use(choice)``) on the validation split; apply the one with
    the best ``metric`` (the first on ties) and return it with every choice's validation score."""
    scores: dict[Any, float] = {}
    for choice in dict.fromkeys(choices):
        use(choice)
        scores[choice] = evaluate(model, data, "valid", ks, batch_size, device=device).metrics[metric]
    best = max(scores, key=lambda k: scores[k])
    use(best)
    return best, scores


def noise_auc(scores: np.ndarray, is_noise: np.ndarray) -> float:
    """ROC-AUC of ``scores`` separating clean (positive class) from noisy interactions (ties count half).

    1.0: every clean interaction scores above every noisy one; 0.5: no separation. NaN if a class is empty.
    """
    from scipy.stats import rankdata

    is_noise = np.asarray(is_noise).astype(bool)
    n_noise, n_clean = int(is_noise.sum()), int((~is_noise).sum())
    if n_noise == 0 or n_clean == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[~is_noise].sum() - n_clean * (n_clean + 1) / 2) / (n_clean * n_noise))
