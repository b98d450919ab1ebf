"""DDRM's inference variants chosen on validation for trained DDRM checkpoints; prints JSON.

Nothing is retrained: for each ``ddrm.pt`` the saved model is re-selected on validation, one option after the
other as ``DDRM.select_inference`` does (start_mix, then start_step, then fusion), starting from the paper's
inference (history start, noise to T, DDRM's score alone), and evaluated once on test. Rows: the paper's inference,
each option chosen alone, and all three chosen in sequence.

    python benchmarks/bench_variants.py CHECKPOINT [CHECKPOINT ...] [--data ml-1m_noisy] [--data-root ROOT]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from typing import Any

from _common import DEFAULT_ROOT, machine

from ddrm.config import from_dict
from ddrm.config.data import DataConfig
from ddrm.evaluation import evaluate
from ddrm.model import DDRM

GRID: dict[str, list[Any]] = {
    "start_mix_choices": [0.0, 0.25, 0.5, 0.75, 1.0],
    "start_step_choices": [0, 1, 2, 5, 10, 20],
    "fusion_choices": [round(0.1 * k, 1) for k in range(11)],
}
ROWS = {"paper": [], "start_mix": ["start_mix_choices"], "start_step": ["start_step_choices"],
        "fusion": ["fusion_choices"], "all three": list(GRID)}


def run(path: str, data) -> dict[str, Any]:
    model = DDRM.load(path, data)
    paper = dataclasses.replace(model.config, start="history", start_step=None, fusion=None,
                                **{k: [] for k in GRID})
    out: dict[str, Any] = {"checkpoint": path, "rows": {}}
    for row, options in ROWS.items():
        t0 = time.perf_counter()
        model.config = dataclasses.replace(paper, **{k: GRID[k] for k in options})
        selection = model.select_inference(data)
        chosen = {o: getattr(model.config, o) for o in selection}
        valid = evaluate(model, data, "valid", (20,)).metrics["recall@20"]
        test = evaluate(model, data, "test", (20,)).metrics
        out["rows"][row] = {"chosen": chosen, "valid_recall@20": round(valid, 4),
                            "test_recall@20": round(test["recall@20"], 4), "test_ndcg@20": round(test["ndcg@20"], 4),
                            "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoints", nargs="+")
    p.add_argument("--data", default="ml-1m_noisy")
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    args = p.parse_args()
    data = from_dict(DataConfig, {"name": args.data, "root": args.data_root}).load(quiet=True)
    print(json.dumps({"benchmark": "variants", "machine": machine(), "data": args.data,
                      "results": [run(c, data) for c in args.checkpoints]}))


if __name__ == "__main__":
    main()
