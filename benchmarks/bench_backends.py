"""Seconds per training epoch and peak RSS of each backend (MF, LightGCN, SGL) on ml-1m_noisy; prints JSON.

    python benchmarks/bench_backends.py [--data ml-1m_noisy] [--epochs 2] [--batch-size 2048]
Each backend runs in its own process so that its peak RSS is its own.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from _common import DEFAULT_ROOT, cuda_peak, machine, peak_rss_mb, run_isolated

from ddrm.backends import DEFAULT_LAYERS, build
from ddrm.data import load_dataset
from ddrm.machine import keep_freed_memory


def one(name: str, args: argparse.Namespace) -> dict:
    data = load_dataset(args.data, root=args.data_root)
    t0 = time.perf_counter()
    b = build(name, layers=args.layers if args.layers is not None else DEFAULT_LAYERS[name], epochs=args.epochs,
              eval_every=args.epochs, batch_size=args.batch_size, quiet=True, device=args.device).fit(data)
    return {"backend": name, "layers": b.config.layers, "batch_size": args.batch_size, "epochs": args.epochs,
            "epoch_seconds": b.result_.epoch_seconds, "epoch_seconds_mean": sum(b.result_.epoch_seconds) / args.epochs,
            "total_seconds_with_eval": time.perf_counter() - t0, "peak_rss_mb": peak_rss_mb(),
            "interactions": data.train.nnz, "device": args.device, **cuda_peak()}


def main() -> None:
    keep_freed_memory()  # as the ddrm CLI does (reported by machine())
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="ml-1m_noisy")
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=2048)
    p.add_argument("--layers", type=int, default=None)
    p.add_argument("--backends", nargs="+", default=["mf", "lightgcn", "sgl"])
    p.add_argument("--device", default="cpu")
    p.add_argument("--only", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.only:
        print(json.dumps(one(args.only, args)))
        return
    common = ["--data", args.data, "--data-root", args.data_root, "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size), "--device", args.device] + (["--layers", str(args.layers)] if args.layers is not None else [])
    rows = [run_isolated(sys.argv[0], [*common, "--only", name]) for name in args.backends]
    print(json.dumps({"benchmark": "backend_epoch", "data": args.data, "machine": machine(), "results": rows}))


if __name__ == "__main__":
    main()
