"""One experiment cell = one model on one dataset with one seed, run in its own folder and skipped once done.

A cell folder holds the run's files (``config.yaml``, ``metrics.json``, checkpoints) and ``per_user.npz`` (test
users and their Recall/NDCG at 10 and 20, for paired tests). A cell whose ``metrics.json`` and ``per_user.npz``
exist is not recomputed: re-running an experiment command resumes from the finished cells.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..baselines import BASELINES
from ..config.loader import build_config, deep_merge, load_yaml
from ..config.runs import PretrainConfig, TrainRunConfig
from ..config.training import EvalConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from ..evaluation import evaluate
from ..io import atomic_path, write_json
from ..progress import progress
from ..runs import load_model, run_pretrain, run_train

logger = logging.getLogger(__name__)

KS = (10, 20)
PER_USER = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")
BASELINE_NAMES = tuple(BASELINES)


@dataclass
class Cell:
    """What to run. ``kind``: ``baseline`` (``name`` in BASELINE_NAMES), ``pretrain`` or ``train`` (DDRM).

    ``config`` is the full config dict for pretrain / train, or the baseline's parameters; ``data`` the data section
    (name, root, noise) it runs on; ``needs`` names the cell whose ``backend.pt`` a DDRM cell starts from.
    """

    key: str
    kind: str
    name: str
    seed: int
    config: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    needs: str | None = None
    labels: dict[str, Any] = field(default_factory=dict)


def cell_done(folder: Path) -> bool:
    return (folder / "metrics.json").is_file() and (folder / "per_user.npz").is_file()


def _per_user(model, data: Interactions, folder: Path, device="cpu") -> None:
    res = evaluate(model, data, "test", KS, per_user=True, device=device)
    assert res.per_user is not None
    with atomic_path(folder / "per_user.npz") as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, users=res.users, **{k.replace("@", "_at_"): res.per_user[k] for k in PER_USER})


def load_per_user(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "per_user.npz", allow_pickle=False) as z:
        return {k.replace("_at_", "@"): z[k] for k in z.files}


def run_cell(cell: Cell, folder: Path, data: Interactions, root: Path, quiet: bool = True) -> dict[str, Any]:
    """Run ``cell`` into ``folder`` (unless done) and return its ``metrics.json`` payload."""
    if cell_done(folder):
        return json.loads((folder / "metrics.json").read_text())
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("state*.pt"):  # an interrupted cell starts over: cells are short
        stale.unlink()
    eval_cfg = EvalConfig(ks=(10, 20, 50, 100))
    t0 = time.perf_counter()
    if cell.kind == "baseline":
        from ..baselines import build, parameters

        params = dict(cell.config)
        accepted = parameters(cell.name)
        if "seed" in accepted:  # a seeded baseline (iALS, DiffRec) takes the cell's seed, whatever its config says
            params["seed"] = cell.seed
        if "quiet" in accepted:
            params.setdefault("quiet", quiet)
        model = build(cell.name, **params).fit(data)
        metrics = {s: evaluate(model, data, s, eval_cfg.ks).metrics for s in ("valid", "test")}
        payload = {"command": "baseline", "model": cell.name,
                   "params": {k: v for k, v in model.params().items() if k != "quiet"}, "seed": cell.seed,
                   "metrics": metrics}
        _per_user(model, data, folder)
    elif cell.kind == "pretrain":
        cfg = build_config(PretrainConfig, overrides={**cell.config, "seed": cell.seed, "output": str(folder)})
        payload = run_pretrain(cfg, quiet=quiet, data=data)
        _per_user(load_model(folder / "backend.pt", data), data, folder)
    elif cell.kind == "train":
        if cell.needs is None:
            raise ConfigError(f"cell {cell.key}: a DDRM cell needs a backend cell.")
        over = {**cell.config, "seed": cell.seed, "output": str(folder),
                "backend_checkpoint": str(root / cell.needs / "backend.pt")}
        cfg = build_config(TrainRunConfig, overrides=over)
        payload = run_train(cfg, quiet=quiet, data=data)
        _per_user(load_model(folder / "ddrm.pt", data), data, folder)
    else:
        raise ConfigError(f"unknown cell kind {cell.kind!r}.")
    payload = {**payload, "cell": cell.key, "labels": cell.labels, "cell_seconds": time.perf_counter() - t0}
    write_json(folder / "metrics.json", payload)
    return payload


def run_cells(cells: list[Cell], root: Path, data_for: Callable[[Cell], Interactions], quiet: bool = True
              ) -> dict[str, dict[str, Any]]:
    """Run every cell (dependencies first, as listed), skipping finished ones; logs progress and an ETA."""
    todo = [c for c in cells if not cell_done(root / c.key)]
    logger.info("%d cells, %d already finished, %d to run", len(cells), len(cells) - len(todo), len(todo))
    results: dict[str, dict[str, Any]] = {}
    spent: dict[tuple[str, str], list[float]] = {}
    bar = progress(cells, desc="cells", quiet=quiet)
    for k, cell in enumerate(bar):
        fresh = not cell_done(root / cell.key)
        t0 = time.perf_counter()
        if cell.needs is not None and "error" in results.get(cell.needs, {}):
            results[cell.key] = {"error": f"needs {cell.needs}, which failed"}
            continue
        try:
            results[cell.key] = run_cell(cell, root / cell.key, data_for(cell), root, quiet=True)
        except ConfigError as exc:  # e.g. EASE refusing a catalogue too large for its dense matrix
            logger.warning("cell %s skipped: %s", cell.key, exc)
            results[cell.key] = {"error": str(exc)}
            continue
        if fresh:
            seconds = time.perf_counter() - t0
            spent.setdefault((cell.kind, cell.name), []).append(seconds)
            rest = [c for c in cells[k + 1:] if not cell_done(root / c.key)]
            eta = estimate_seconds(rest, spent)
            logger.info("cell %s done in %.0f s; %d to go, about %.0f min left", cell.key, seconds, len(rest), eta / 60)
            bar.set_postfix(eta_min=f"{eta / 60:.0f}")
    return results


def estimate_seconds(rest: list[Cell], spent: dict[tuple[str, str], list[float]]) -> float:
    """Seconds the ``rest`` cells should take, from the finished cells' times: the mean of the same kind and model
    (e.g. ``pretrain``/``lightgcn``), else of the same kind, else of all finished cells."""
    if not spent:
        return 0.0
    every = [x for xs in spent.values() for x in xs]
    by_kind: dict[str, list[float]] = {}
    for (kind, _), xs in spent.items():
        by_kind.setdefault(kind, []).extend(xs)
    total = 0.0
    for c in rest:
        xs = spent.get((c.kind, c.name)) or by_kind.get(c.kind) or every
        total += sum(xs) / len(xs)
    return total


def load_run_config(configs: Path, dataset: str, name: str) -> dict[str, Any]:
    """``configs/<dataset>/<name>.yaml`` as a dict (falling back to ml-1m_noisy's recipe, with a warning)."""
    path = configs / dataset / f"{name}.yaml"
    if not path.is_file():
        fallback = configs / "ml-1m_noisy" / f"{name}.yaml"
        if not fallback.is_file():
            raise ConfigError(f"no config {path} (nor {fallback}).")
        logger.warning("no %s: using the ml-1m_noisy recipe %s (not tuned for %s)", path, fallback, dataset)
        path = fallback
    cfg = load_yaml(path)
    cfg.pop("output", None)
    cfg.pop("backend_checkpoint", None)
    return deep_merge(cfg, {"data": {"name": dataset}})


__all__ = ["Cell", "run_cell", "run_cells", "load_per_user", "load_run_config", "KS", "BASELINE_NAMES"]
