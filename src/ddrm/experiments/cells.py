"""One experiment cell = one model on one dataset with one seed, run in its own folder and skipped once done.

A cell folder holds the run's files (``config.yaml``, ``metrics.json``, checkpoints) and ``per_user.npz`` (test
users and their Recall/NDCG at 10 and 20, for paired tests). A cell whose ``metrics.json`` and ``per_user.npz``
exist is not recomputed: re-running an experiment command resumes from the finished cells. Its ``metrics.json``
names the cell's fingerprint (:mod:`ddrm.experiments.records`): a finished cell made with another config is run
again, and with a records folder each finished cell is also kept there and taken from there on a fresh machine.
A trained cell stopped by SIGINT / SIGTERM keeps its training state (``state*.pt``) and ``cell.json`` (its
fingerprint and the seconds it had run): the next run of the command continues that training where it stopped,
bit-identically on the same machine, instead of starting the cell over. Several processes can share one experiment:
a process runs a cell only while it holds the cell's lock (``<cell folder>.lock``), see :func:`run_cells`.
"""

from __future__ import annotations

import contextlib
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
from ..errors import CheckpointError, ConfigError
from ..evaluation import evaluate
from ..interrupt import TrainingInterrupted
from ..io import atomic_path, file_lock, write_json
from ..machine import code_version, where_run
from ..progress import progress
from ..runs import STATE_FILES, load_model, run_pretrain, run_train
from ..stopwatch import Parts, Stopwatch, saved_parts
from .records import fingerprint, from_npz, load_record, record_path, save_record, to_npz

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


def cell_done(folder: Path, fp: str | None = None) -> bool:
    """Whether ``folder`` holds a finished cell (of fingerprint ``fp`` when given; a cell from before fingerprints
    were recorded counts as that one)."""
    if not ((folder / "metrics.json").is_file() and (folder / "per_user.npz").is_file()):
        return False
    return fp is None or json.loads((folder / "metrics.json").read_text()).get("fingerprint", fp) == fp


def _clear(folder: Path) -> None:
    """Remove what a cell run leaves in ``folder`` (files only; the folder stays)."""
    for f in folder.iterdir() if folder.is_dir() else []:
        if f.is_file():
            f.unlink()


def _write_per_user(folder: Path, per_user: dict[str, np.ndarray]) -> None:
    with atomic_path(folder / "per_user.npz") as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **to_npz(per_user))


def _per_user(model, data: Interactions, folder: Path, device="cpu") -> None:
    res = evaluate(model, data, "test", KS, per_user=True, device=device)
    assert res.per_user is not None
    _write_per_user(folder, {"users": res.users, **{k: res.per_user[k] for k in PER_USER}})


def load_per_user(folder: Path) -> dict[str, np.ndarray]:
    with np.load(folder / "per_user.npz", allow_pickle=False) as z:
        return from_npz({k: z[k] for k in z.files})


MARKER = "cell.json"


def interrupted_seconds(folder: Path, fp: str | None) -> Parts | None:
    """The seconds and CPU seconds an interrupted cell in ``folder`` had run when its training state can be continued
    (a state file and a ``cell.json`` of fingerprint ``fp``; CPU seconds None when that marker did not count them);
    None when the cell has to start over."""
    marker = folder / MARKER
    if not marker.is_file() or not any((folder / f).is_file() for f in STATE_FILES):
        return None
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        return None
    return saved_parts(saved) if saved.get("fingerprint") == fp else None


def run_cell(cell: Cell, folder: Path, data: Interactions, root: Path, quiet: bool = True,
             fp: str | None = None, device: str | None = None) -> dict[str, Any]:
    """Run ``cell`` into ``folder`` (unless done, with fingerprint ``fp`` when given) and return its ``metrics.json``
    payload, which records ``fp``. A trained cell interrupted earlier under the same fingerprint continues its
    training state; any other unfinished folder starts over. ``device`` (``cpu``, ``cuda``, ...) replaces the
    configs' training device (a resumed state moves to it) and that of a baseline that has one (DiffRec); None keeps
    them."""
    if cell_done(folder, fp):
        return json.loads((folder / "metrics.json").read_text())
    before = interrupted_seconds(folder, fp) if cell.kind != "baseline" else None
    if before is not None:
        logger.info("cell %s: continuing its interrupted training (%.0f s already run)", cell.key, before[0])
    watch = Stopwatch(before or saved_parts(None))  # every part's seconds

    try:
        try:
            payload = _run(cell, folder, data, root, quiet, fp, device, resume=before is not None)
        except CheckpointError as exc:
            if before is None:
                raise
            logger.warning("cell %s: its training state cannot be continued (%s): starting it over", cell.key, exc)
            before, watch.before = None, saved_parts(None)
            payload = _run(cell, folder, data, root, quiet, fp, device, resume=False)
    except TrainingInterrupted as exc:
        write_json(folder / MARKER, {"fingerprint": fp, **watch.record()})
        exc.how = "Run the same command again to continue: finished cells are kept and this one resumes from its state"
        raise
    payload = {**payload, "cell": cell.key, "labels": cell.labels, "code": code_version(),
               "machine": where_run(str(device or payload.get("device") or "cpu")),
               **watch.record("cell_seconds", "cell_cpu_seconds"), **({"fingerprint": fp} if fp else {})}
    write_json(folder / "metrics.json", payload)
    (folder / MARKER).unlink(missing_ok=True)
    return payload


def _run(cell: Cell, folder: Path, data: Interactions, root: Path, quiet: bool, fp: str | None,
         device: str | None, resume: bool) -> dict[str, Any]:
    """Compute ``cell`` in ``folder`` (a fresh folder unless ``resume``) and return its run payload."""
    folder.mkdir(parents=True, exist_ok=True)
    if not resume:
        _clear(folder)  # an interrupted baseline, a state of another config, or a stale run starts over
        if cell.kind != "baseline":
            write_json(folder / MARKER, {"fingerprint": fp, "seconds": 0.0, "cpu_seconds": 0.0})
    where = device or "cpu"
    eval_cfg = EvalConfig(ks=(10, 20, 50, 100))
    if cell.kind == "baseline":
        from ..baselines import build, run_settings

        # a seeded baseline (iALS, DiffRec) takes the cell's seed, whatever its config says
        model = build(cell.name, **{**cell.config, **run_settings(cell.name, cell.seed, device, quiet)}).fit(data)
        metrics = {s: evaluate(model, data, s, eval_cfg.ks, device=where).metrics for s in ("valid", "test")}
        payload = {"command": "baseline", "model": cell.name,
                   "params": {k: v for k, v in model.params().items() if k != "quiet"}, "seed": cell.seed,
                   "metrics": metrics}
        _per_user(model, data, folder, where)
    elif cell.kind in ("pretrain", "train"):
        over = {**cell.config, "seed": cell.seed, "output": str(folder)}
        if device is not None:
            over = deep_merge(over, {"train": {"device": device}})
        if cell.kind == "train":
            if cell.needs is None:
                raise ConfigError(f"cell {cell.key}: a DDRM cell needs a backend cell.")
            over["backend_checkpoint"] = str(root / cell.needs / "backend.pt")
            payload = run_train(build_config(TrainRunConfig, overrides=over), quiet=quiet, data=data, resume=resume)
        else:
            payload = run_pretrain(build_config(PretrainConfig, overrides=over), quiet=quiet, data=data, resume=resume)
        checkpoint = folder / ("ddrm.pt" if cell.kind == "train" else "backend.pt")
        _per_user(load_model(checkpoint, data, where), data, folder, where)
    else:
        raise ConfigError(f"unknown cell kind {cell.kind!r}.")
    return payload


def cell_fingerprints(cells: list[Cell]) -> dict[str, str]:
    """Each cell's fingerprint (a DDRM cell's includes its backend cell's, listed before it)."""
    fps: dict[str, str] = {}
    for c in cells:
        fps[c.key] = fingerprint(c.kind, c.name, c.seed, c.config, c.data, fps.get(c.needs) if c.needs else None)
    return fps


def restore_cell(folder: Path, path: Path) -> bool:
    """Fill ``folder`` from the cell record ``path`` (if there is one): ``metrics.json`` and ``per_user.npz``, no
    checkpoint. Whatever the folder held (another config's run) is removed first."""
    if not path.is_file():
        return False
    payload, per_user = load_record(path)
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder)
    _write_per_user(folder, per_user)
    write_json(folder / "metrics.json", payload)
    return True


NOT_RUN = "not run yet"  # the error of a cell left out by ``finished_only``


def lock_path(root: Path, key: str) -> Path:
    """The lock of cell ``key`` while a process runs it: ``<cell folder>.lock``, beside the folder (whose files a
    fresh run clears)."""
    folder = root / key
    folder.parent.mkdir(parents=True, exist_ok=True)
    return folder.parent / f"{folder.name}.lock"


def run_cells(cells: list[Cell], root: Path, data_for: Callable[[Cell], Interactions], quiet: bool = True,
              records: Path | None = None, device: str | None = None, finished_only: bool = False
              ) -> dict[str, dict[str, Any]]:
    """Run every cell (dependencies first, as listed), skipping finished ones; logs progress and an ETA.

    A cell folder finished under another fingerprint (another config) is run again. With ``records`` (see
    :mod:`ddrm.experiments.records`) a cell missing here is taken from its record when there is one, and each cell
    run here (or finished here under its fingerprint but not recorded yet) is recorded there. A DDRM cell to run
    whose backend cell came from a record (no ``backend.pt``) trains that backend again first, replacing its
    record's numbers (the same on the same kind of CPU). ``device``: see :func:`run_cell` (not part of a cell's
    fingerprint, like the CPU's model). ``finished_only``: run nothing and load no data; a cell neither finished
    here nor recorded gets the error :data:`NOT_RUN` (an experiment assembled from what workers have finished).

    Several processes may run one experiment at once (the same command and output folder: on one machine, or on a
    shared file system with ``flock``): a process runs a cell only while it holds the cell's lock (:func:`lock_path`),
    goes on with the next cells when another process holds it (and with the DDRM cells that need it), and at the
    end waits for those cells and reads their results, or runs one whose process stopped before finishing it. Each
    cell is thus run once, and every process ends with the whole experiment."""
    code_version()  # read now, when this process's code is loaded: a commit made while the cells run is not theirs
    fps, by_key = cell_fingerprints(cells), {c.key: c for c in cells}

    def done(c: Cell) -> bool:
        return cell_done(root / c.key, fps[c.key]) or (records is not None
                                                       and record_path(records, c.key, fps[c.key]).is_file())

    todo = [c for c in cells if not done(c)]
    logger.info("%d cells, %d already finished, %d %s", len(cells), len(cells) - len(todo), len(todo),
                "not run yet (left out: finished cells only)" if finished_only else "to run")
    results: dict[str, dict[str, Any]] = {}
    spent: dict[tuple[str, str], list[float]] = {}

    def visit(k: int, cell: Cell, wait: bool) -> bool:
        """Finish ``cell`` (read back, taken from its record, or run); False, at once, when another process holds
        its lock and ``wait`` is off."""
        lock = file_lock(lock_path(root, cell.key), wait) if not finished_only else contextlib.nullcontext(True)
        with lock as held:
            if held:
                finish(k, cell)
            return held

    def finish(k: int, cell: Cell) -> None:
        folder, fp = root / cell.key, fps[cell.key]
        if records is not None and not cell_done(folder, fp) and restore_cell(folder, record_path(records, cell.key,
                                                                                                  fp)):
            logger.info("cell %s: taken from its record in %s", cell.key, records)
        fresh = not cell_done(folder, fp)
        if not fresh:  # finished here (by this process or another) or taken from its record: read back
            results[cell.key] = json.loads((folder / "metrics.json").read_text())
        elif finished_only:
            results[cell.key] = {"error": NOT_RUN}
            return
        else:
            if (folder / "metrics.json").is_file():
                logger.warning("cell %s was run with another config: running it again", cell.key)
            if cell.needs is not None and "error" in results.get(cell.needs, {}):
                results[cell.key] = {"error": f"needs {cell.needs}, which failed"}
                return
            t0 = time.perf_counter()
            try:
                if cell.needs is not None and not (root / cell.needs / "backend.pt").is_file():
                    with file_lock(lock_path(root, cell.needs)):  # no other process trains it meanwhile
                        if not (root / cell.needs / "backend.pt").is_file():
                            results[cell.needs] = _retrain(by_key[cell.needs], root, data_for, fps[cell.needs],
                                                           records, device)
                results[cell.key] = run_cell(cell, folder, data_for(cell), root, quiet=True, fp=fp, device=device)
            except ConfigError as exc:  # e.g. EASE refusing a catalogue too large for its dense matrix
                logger.warning("cell %s skipped: %s", cell.key, exc)
                results[cell.key] = {"error": str(exc)}
                return
            seconds = time.perf_counter() - t0
            spent.setdefault((cell.kind, cell.name), []).append(seconds)
            rest = [c for c in cells[k + 1:] if not done(c)]
            eta = estimate_seconds(rest, spent)
            logger.info("cell %s done in %.0f s; %d to go, about %.0f min left", cell.key, seconds, len(rest), eta / 60)
            bar.set_postfix(eta_min=f"{eta / 60:.0f}")
        if (records is not None and results[cell.key].get("fingerprint") == fp
                and not record_path(records, cell.key, fp).is_file()):  # run now, or before --records was given
            _record(records, cell.key, fp, results[cell.key], folder)

    elsewhere: list[tuple[int, Cell]] = []  # cells another process held when this one came to them
    bar = progress(cells, desc="cells", quiet=quiet)
    for k, cell in enumerate(bar):
        waits = cell.needs is not None and any(c.key == cell.needs for _, c in elsewhere)
        if waits or not visit(k, cell, False):
            logger.info("cell %s: %s; going on, and back to it at the end", cell.key,
                        f"its backend cell {cell.needs} is run by another process" if waits
                        else "run by another process")
            elsewhere.append((k, cell))
    for k, cell in elsewhere:
        logger.info("cell %s: waiting for the process running it", cell.key)
        visit(k, cell, True)
    return {c.key: results[c.key] for c in cells if c.key in results}


def _record(records: Path | None, key: str, fp: str, payload: dict[str, Any], folder: Path) -> None:
    if records is not None:
        save_record(record_path(records, key, fp), payload, load_per_user(folder))


def _retrain(cell: Cell, root: Path, data_for: Callable[[Cell], Interactions], fp: str, records: Path | None,
             device: str | None) -> dict[str, Any]:
    """Train a backend cell again whose numbers came from a record without its checkpoint; say if they moved."""
    folder = root / cell.key
    old = json.loads((folder / "metrics.json").read_text()) if (folder / "metrics.json").is_file() else {}
    logger.info("cell %s: training it again for its checkpoint (its record has none)", cell.key)
    _clear(folder)  # its restored metrics would make run_cell take it as done
    payload = run_cell(cell, folder, data_for(cell), root, quiet=True, fp=fp, device=device)
    before, after = (m.get("metrics", {}).get("test", {}).get("recall@20") for m in (old, payload))
    if before is not None and after != before:
        logger.warning("cell %s: trained again, test recall@20 %s (its record said %s); the table uses the new run",
                       cell.key, after, before)
    _record(records, cell.key, fp, payload, folder)
    return payload


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


__all__ = ["Cell", "NOT_RUN", "run_cell", "run_cells", "cell_fingerprints", "restore_cell", "load_per_user", "load_run_config",
           "KS", "BASELINE_NAMES"]
