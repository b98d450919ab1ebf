"""Time full-ranking evaluation of every ml-1m_noisy test user for a 64-d embedding scorer; prints JSON.

    python benchmarks/bench_eval.py [--data ml-1m_noisy] [--data-root ../shared/data] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
from _common import cuda_peak, machine, peak_rss_mb

from ddrm.data import load_dataset
from ddrm.evaluation import evaluate
from ddrm.machine import keep_freed_memory


class EmbeddingScorer:
    """score(users) = U[users] @ V^T with fixed random embeddings."""

    def __init__(self, n_users: int, n_items: int, dim: int, seed: int, device: str = "cpu") -> None:
        g = torch.Generator().manual_seed(seed)
        self.user = torch.randn(n_users, dim, generator=g).to(device)
        self.item = torch.randn(n_items, dim, generator=g).to(device)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.user[users] @ self.item.T


def main() -> None:
    keep_freed_memory()  # as the ddrm CLI does (reported by machine())
    here = Path(__file__).resolve().parents[1]
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="ml-1m_noisy")
    p.add_argument("--data-root", default=os.environ.get("DDRM_DATA", str(here.parent / "shared" / "data")))
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--split", default="test")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    data = load_dataset(args.data, root=args.data_root)
    model = EmbeddingScorer(data.n_users, data.n_items, args.dim, seed=0, device=args.device)
    evaluate(model, data, args.split, (20,), device=args.device)  # warm-up
    times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        res = evaluate(model, data, args.split, device=args.device)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    print(json.dumps({
        "benchmark": "full_ranking_evaluation", "data": data.name, "split": args.split,
        "users": int(res.users.size), "items": data.n_items, "dim": args.dim, "ks": [10, 20, 50, 100],
        "seconds_min": min(times), "seconds_median": sorted(times)[len(times) // 2], "repeats": args.repeats,
        "peak_rss_mb": peak_rss_mb(), "machine": machine(), "device": args.device, **cuda_peak(),
    }))


if __name__ == "__main__":
    main()
