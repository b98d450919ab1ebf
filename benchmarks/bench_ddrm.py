"""DDRM speed on ml-1m_noisy with the reference MF configuration; prints JSON.

Seconds per training epoch (429,993 triples, batch 2048) in fp32 and with bf16 autocast, seconds per full
test evaluation (all users, 20 reverse steps included) and peak RSS. The backbone is the reference MF
checkpoint + 4 propagation layers when ../shared/reference is present, else random embeddings of the same shape.

    python benchmarks/bench_ddrm.py [--epochs 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from _common import DEFAULT_ROOT, cuda_peak, machine, peak_rss_mb

from ddrm.backends import build
from ddrm.data import load_dataset
from ddrm.evaluation import evaluate
from ddrm.machine import keep_freed_memory
from ddrm.model import DDRM
from ddrm.training import TrainConfig

REF = Path(__file__).resolve().parents[2] / "shared" / "reference" / "ddrm-official-ml-1m" / "mf.pt"


def main() -> None:
    keep_freed_memory()  # as the ddrm CLI does (reported by machine())
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="ml-1m_noisy")
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-bf16", action="store_true")
    args = p.parse_args()
    data = load_dataset(args.data, root=args.data_root)
    if REF.is_file() and args.data == "ml-1m_noisy":
        backend = build("import", path=str(REF), layers=4, epochs=0, device=args.device).fit(data)
        source = "reference mf.pt + 4 layers"
    else:
        backend = build("mf", epochs=0, device=args.device).fit(data)
        source = "random MF embeddings"
    out = {"benchmark": "ddrm", "data": args.data, "backbone": source, "config": "reference MF (T=20, dims [100,1000])",
           "triples_per_epoch": data.train.nnz, "batch_size": 2048, "machine": machine(), "device": args.device,
           "runs": []}
    for bf16 in ([False] if args.no_bf16 else [False, True]):
        model = DDRM(backend, train=TrainConfig(epochs=args.epochs, eval_every=10**6, device=args.device),
                     quiet=True, bf16=bf16)
        model.fit(data)
        t0 = time.perf_counter()
        res = evaluate(model, data, "test", device=model.device_)
        if model.device_.type == "cuda":
            torch.cuda.synchronize()
        eval_s = time.perf_counter() - t0
        out["runs"].append({"bf16": bf16, "epoch_seconds": model.result_.epoch_seconds,
                            "eval_seconds_test_all_users": eval_s, "test_recall@20": res.metrics["recall@20"],
                            "test_ndcg@20": res.metrics["ndcg@20"]})
    out["peak_rss_mb"] = peak_rss_mb()
    out.update(cuda_peak())
    print(json.dumps(out))


if __name__ == "__main__":
    main()
