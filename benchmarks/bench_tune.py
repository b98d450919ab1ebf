"""Wall time per tuning trial for each model, from ``ddrm tune`` studies; prints JSON.

    python benchmarks/bench_tune.py --models ease itemknn rp3beta ials mf --trials 3 [--data ml-1m_noisy]
    python benchmarks/bench_tune.py --studies runs/tune/ml-1m_noisy      # summarise finished studies, no new trial
    python benchmarks/bench_tune.py --studies benchmarks/studies/yelp   # the same from the committed trial records

Running mode: one ``ddrm tune --no-final`` per model into a temporary folder (the trained models start from
``configs/<data>/<model>.yaml`` where it exists, pruner off so each trial runs its whole schedule); a study's
``trials.csv`` gives each trial's seconds (fit + validation; wall clock, and the worker's CPU seconds where recorded:
the cost of a trial that shared a busy machine). Study mode reads the ``trials.csv`` of every study folder
under the given path, and every study records file there (``<name>.jsonl``, ``ddrm.tuning.records``: what a clone
has of studies that ran elsewhere); pruned trials are listed apart: their time is cut short by the pruner.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DEFAULT_ROOT, machine

REPO = Path(__file__).resolve().parents[1]


def csv_rows(trials_csv: Path) -> list[dict]:
    """A study folder's trials as rows (state, value, seconds, cpu_seconds; strings, empty where unknown)."""
    with open(trials_csv, newline="") as fh:
        return list(csv.DictReader(fh))


def record_rows(records: Path) -> list[dict]:
    """The finished trials of a records file as the same rows (its running trials are not in it)."""
    from ddrm.tuning.records import read_records

    rows = []
    for study in read_records(records).values():
        for t in study["trials"]:
            attrs = t.get("user_attrs", {})
            rows.append({"state": t["state"].lower(), "value": "" if t.get("value") is None else str(t["value"]),
                         "seconds": str(attrs.get("seconds", 0.0)), "cpu_seconds": str(attrs.get("cpu_seconds", ""))})
    return rows


def summarise(model: str, rows: list[dict], where: Path) -> dict:
    out: dict = {"model": model, "trials": len(rows), "study": str(where)}
    for state in ("complete", "pruned"):
        secs = [float(r["seconds"]) for r in rows if r["state"] == state]
        if secs:
            out[state] = {"n": len(secs), "mean_s": statistics.fmean(secs), "median_s": statistics.median(secs),
                          "min_s": min(secs), "max_s": max(secs)}
            # the process's CPU time: on a shared machine, the trial's work whatever share of the cores it got
            cpu = [float(r["cpu_seconds"]) for r in rows if r["state"] == state and r.get("cpu_seconds")]
            if cpu:
                out[state].update({"cpu_n": len(cpu), "cpu_mean_s": statistics.fmean(cpu),
                                   "cpu_median_s": statistics.median(cpu)})
    done = [float(r["value"]) for r in rows if r["state"] == "complete" and r["value"]]
    if done:
        out["best_valid"] = max(done)
    return out


def run(model: str, args: argparse.Namespace, folder: Path) -> dict:
    cmd = [sys.executable, "-m", "ddrm", "tune", "--model", model, "--data", args.data, "--data-root", args.data_root,
           "--trials", str(args.trials), "--output", str(folder / model), "--pruner", "none", "--no-final", "--quiet",
           "--json"]
    recipe = REPO / "configs" / args.data / f"{model.split('-')[0]}.yaml"
    if model.split("-")[0] in ("mf", "lightgcn", "sgl") and recipe.is_file():
        cmd += ["--config", str(recipe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return summarise(model, csv_rows(folder / model / "trials.csv"), folder / model)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--models", nargs="+", default=["mostpop", "itemknn", "rp3beta", "ease", "ials"])
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--data", default="ml-1m_noisy")
    p.add_argument("--data-root", default=DEFAULT_ROOT)
    p.add_argument("--studies", default=None, help="summarise the studies under this folder instead of running")
    args = p.parse_args()
    if args.studies:
        folder = Path(args.studies)
        rows = [summarise(f.parent.name, csv_rows(f), f.parent) for f in sorted(folder.glob("*/trials.csv"))]
        rows += [summarise(f.stem, record_rows(f), f) for f in sorted(folder.glob("*.jsonl"))]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = [run(m, args, Path(tmp)) for m in args.models]
    print(json.dumps({"benchmark": "tune_trial_seconds", "data": args.data, "machine": machine(), "results": rows}))


if __name__ == "__main__":
    main()
