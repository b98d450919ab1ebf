"""How well each model's score picks out the noisy training interactions (what ``ddrm noise`` lists); prints JSON.

For each dataset it trains a BPR backend, the same backend with T-CE, and DDRM on the plain backend, fits EASE, and
reports the ROC-AUC of each score separating clean from noisy training interactions (1 = every clean one above
every noisy one, 0.5 = chance), beside item popularity; test Recall@20 of each model for context, and seconds.

- ``synthetic``: the built-in generator with 20 % planted noise (labels: the planted pairs);
- ``ml-100k``: MovieLens-100K split chronologically with ``mode: noisy`` (ratings below 4 kept in train as natural
  noise, test clean; labels: rating < 4), as ``ddrm data prepare ... --mode noisy --method chrono`` writes it.

    python benchmarks/bench_noise.py [--datasets synthetic ml-100k] [--backend mf] [--epochs 200]
        [--ddrm-epochs 20] [--seed 0] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from _common import DEFAULT_ROOT, machine

from ddrm.backends import build
from ddrm.baselines import EASE
from ddrm.cleaning import auc_report, interaction_scores, popularity_scores
from ddrm.config import from_dict
from ddrm.config.data import DataConfig
from ddrm.config.training import EvalConfig
from ddrm.evaluation import evaluate
from ddrm.model import DDRM, DDRMConfig
from ddrm.training import TrainConfig

DATASETS: dict[str, dict[str, Any]] = {
    "synthetic": {"name": "synthetic"},
    "ml-100k": {"name": "ml-100k", "read": {"split": {"mode": "noisy", "method": "chrono"}}},
}


def run(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    data = from_dict(DataConfig, {**DATASETS[dataset], "root": args.data_root}).load(quiet=True)
    common = {"dim": 64, "lr": args.lr, "batch_size": 1024, "epochs": args.epochs, "eval_every": 5, "patience": 4,
              "seed": args.seed, "quiet": True}
    models: dict[str, Any] = {}
    seconds: dict[str, float] = {}

    def fit(name: str, make) -> Any:
        t0 = time.perf_counter()
        models[name] = make()
        seconds[name] = round(time.perf_counter() - t0, 1)
        return models[name]

    backend = fit(args.backend, lambda: build(args.backend, **common).fit(data))
    fit(f"{args.backend} + T-CE", lambda: build(args.backend, denoise="tce", tce_warmup=args.tce_warmup,
                                                **common).fit(data))
    fit(f"{args.backend} + DDRM", lambda: DDRM(backend, DDRMConfig(), TrainConfig(
        epochs=args.ddrm_epochs, batch_size=1024, lr=1e-3, eval_every=5, patience=2), EvalConfig(), args.seed,
        quiet=True).fit(data))
    fit("EASE", lambda: EASE(reg=args.ease_reg).fit(data))
    scores = {f"{name} score": interaction_scores(m, data) for name, m in models.items()}
    report = auc_report({**scores, "item popularity": popularity_scores(data)}, data)
    test = {name: round(evaluate(m, data, "test", (20,)).metrics["recall@20"], 4) for name, m in models.items()}
    return {"dataset": dataset, "summary": data.summary(), **report, "test_recall@20": test, "seconds": seconds}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    p.add_argument("--backend", default="mf", choices=["mf", "lightgcn"])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--ddrm-epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--tce-warmup", type=int, default=2000)
    p.add_argument("--ease-reg", type=float, default=100.0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    args = p.parse_args()
    print(json.dumps({"benchmark": "noise", "machine": machine(), "args": vars(args),
                      "results": [run(d, args) for d in args.datasets]}))


if __name__ == "__main__":
    main()
