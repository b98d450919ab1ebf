"""Run orchestration behind the CLI: resolve a config, fit, evaluate, and write a run folder atomically."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import distributed
from .backends import Backend
from .checkpoint import data_info
from .config.data import DataConfig
from .config.loader import dump_yaml, to_dict
from .config.runs import PretrainConfig, TrainRunConfig
from .config.training import EvalConfig
from .data.interactions import Interactions
from .errors import DDRMError
from .evaluation import evaluate
from .io import atomic_open, write_json
from .model import DDRM
from .recommender import Recommender

logger = logging.getLogger(__name__)


def evaluate_splits(model, data: Interactions, eval_cfg: EvalConfig, device="cpu",
                    splits: tuple[str, ...] = ("valid", "test")) -> dict[str, dict[str, float]]:
    """``{split: metrics}`` for the given splits (test is evaluated once, after model selection)."""
    return {s: evaluate(model, data, s, eval_cfg.ks, eval_cfg.batch_size, device=device).metrics for s in splits}


def write_run(folder: str | os.PathLike[str], config: Any, payload: dict[str, Any]) -> Path:
    """Write ``config.yaml`` (the resolved config) and ``metrics.json`` into ``folder``, each atomically (rank 0)."""
    out = Path(folder)
    if not distributed.is_main():
        return out
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "config.yaml", "w", encoding="utf-8") as fh:
        fh.write(dump_yaml(config))
    write_json(out / "metrics.json", payload)
    return out


STATE_FILES = ("state.pt", "state-backend.pt", "state-ddrm.pt")


def start_run(folder: str | os.PathLike[str], config: Any, command: str, resume: bool) -> Path:
    """Prepare a run folder: a fresh run writes its resolved ``config.yaml`` first (so ``--resume`` can find it);
    a fresh run refuses a folder holding an interrupted run, and ``resume`` refuses a folder without one."""
    out = Path(folder)
    pending = [f for f in STATE_FILES if (out / f).is_file()]
    if resume and not pending:
        done = " (it finished: see metrics.json)" if (out / "metrics.json").is_file() else ""
        raise DDRMError(f"{out}: no interrupted run to resume{done}.")
    if not resume and pending:
        raise DDRMError(f"{out} holds an interrupted run ({pending[0]}); continue it with 'ddrm {command} --resume "
                        f"{out}' or choose another --output.")
    if not resume and distributed.is_main():
        out.mkdir(parents=True, exist_ok=True)
        with atomic_open(out / "config.yaml", "w", encoding="utf-8") as fh:
            fh.write(dump_yaml(config))
    return out


RUN_LOG = "run.log"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _Forward(logging.Handler):
    """Hands a record on to the handlers above the ``ddrm`` logger (the caller's own logging setup)."""

    def emit(self, record: logging.LogRecord) -> None:
        parent = logging.getLogger("ddrm").parent
        if parent is not None:
            parent.handle(record)


@contextmanager
def run_log(folder: Path, command: str, resume: bool) -> Iterator[None]:
    """Append ddrm's log records (INFO and up: one line per validation, the selections, warnings) to
    ``folder/run.log`` while the run lasts, with timestamps, whatever ``--quiet`` or the caller's logging setup
    shows elsewhere; rank 0 only. A resumed run appends to the same file.

    When the ``ddrm`` logger lets less than INFO through, it takes INFO for the run but hands on to the caller's
    handlers only what it let through before, so nothing new reaches the terminal."""
    if not distributed.is_main():
        yield
        return
    ddrm_logger = logging.getLogger("ddrm")
    handler = logging.FileHandler(folder / RUN_LOG, mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.setLevel(logging.INFO)
    level, propagate, shown = ddrm_logger.level, ddrm_logger.propagate, ddrm_logger.getEffectiveLevel()
    forward = _Forward(shown) if shown > logging.INFO and propagate else None
    if forward is not None:
        ddrm_logger.setLevel(logging.INFO)
        ddrm_logger.propagate = False
        ddrm_logger.addHandler(forward)
    ddrm_logger.addHandler(handler)
    try:
        logger.info("ddrm %s%s: run folder %s (its resolved config: config.yaml)", command,
                    " resumed" if resume else "", folder)
        yield
    except BaseException as exc:  # said in the file only: the terminal gets the command's own message
        handler.handle(logger.makeRecord(logger.name, logging.WARNING, __file__, 0, "ddrm %s stopped: %s",
                                         (command, exc or type(exc).__name__), None))
        raise
    finally:
        ddrm_logger.removeHandler(handler)
        handler.close()
        if forward is not None:
            ddrm_logger.removeHandler(forward)
            ddrm_logger.setLevel(level)
            ddrm_logger.propagate = propagate


def finish_run(folder: Path) -> None:
    """Remove the training states once the run's results are written."""
    distributed.barrier()
    if not distributed.is_main():
        return
    for f in STATE_FILES:
        (folder / f).unlink(missing_ok=True)


def resume_config(cls, folder: str | os.PathLike[str]):
    """The resolved config of the run in ``folder`` (its ``config.yaml``), with ``output`` pointing at ``folder``."""
    from .config import build_config, load_yaml

    path = Path(folder) / "config.yaml"
    if not path.is_file():
        raise DDRMError(f"{folder}: not a run folder (no config.yaml to resume from).")
    return build_config(cls, overrides={**load_yaml(path), "output": str(folder)})


def run_baseline(name: str, params: dict[str, Any], data_cfg: DataConfig, eval_cfg: EvalConfig,
                 quiet: bool = False, data: Interactions | None = None, device: str = "cpu",
                 output: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Fit baseline ``name`` and evaluate it on valid and test; returns the JSON payload. With ``output``, also a
    run folder: ``baseline.pt`` (the fitted model), ``config.yaml``, ``metrics.json`` and ``run.log``."""
    import dataclasses

    from .baselines import build

    model = build(name, **params)  # bad parameters are refused before a folder is made
    if output is None:
        return _fit_baseline(model, data_cfg, eval_cfg, quiet, data, device)[0]
    config = {"data": dataclasses.asdict(data_cfg), "eval": dataclasses.asdict(eval_cfg), model.name: model.params()}
    out = start_run(output, config, "baseline", resume=False)
    with run_log(out, "baseline", resume=False):
        payload, data = _fit_baseline(model, data_cfg, eval_cfg, quiet, data, device)
        model.save(out / "baseline.pt", data, config, payload["metrics"])
        payload.update({"output": str(out), "checkpoint": str(out / "baseline.pt")})
        write_run(out, config, payload)
    return payload


def _fit_baseline(model: Recommender, data_cfg: DataConfig, eval_cfg: EvalConfig, quiet: bool,
                  data: Interactions | None, device: str) -> tuple[dict[str, Any], Interactions]:
    """Fit ``model`` and evaluate it on valid and test: (the JSON payload, the data it was fitted on)."""
    from .training import resolve_device

    data = data if data is not None else data_cfg.load(quiet=quiet)
    t0 = time.perf_counter()
    model.fit(data)
    fit_s = time.perf_counter() - t0
    payload = {"command": "baseline", "model": model.name, "params": model.params(),
               "data": {"name": data.name, "fingerprint": data.fingerprint(), "n_users": data.n_users,
                        "n_items": data.n_items},
               "metrics": evaluate_splits(model, data, eval_cfg, resolve_device(device)), "fit_seconds": fit_s,
               "seconds": time.perf_counter() - t0}
    return payload, data


def run_pretrain(cfg: PretrainConfig, quiet: bool = False, data: Interactions | None = None,
                 resume: bool = False) -> dict[str, Any]:
    """Load data, train the backend, evaluate valid + test, save ``backend.pt`` + config + metrics.

    The training state is kept in ``output/state.pt`` (every epoch, and on SIGINT/SIGTERM); ``resume`` continues it.
    """
    out = start_run(cfg.output, cfg, "pretrain", resume)
    with run_log(out, "pretrain", resume):
        return _pretrain(out, cfg, quiet, data)


def _pretrain(out: Path, cfg: PretrainConfig, quiet: bool, data: Interactions | None) -> dict[str, Any]:
    data = data if data is not None else cfg.data.load(quiet=quiet)
    t0 = time.perf_counter()
    backend = Backend(cfg.backend, cfg.train, cfg.eval, cfg.seed, quiet).fit(data, out / "state.pt")
    metrics = evaluate_splits(backend, data, cfg.eval, backend.device_)
    return complete_run(out, cfg, data, backend, "backend.pt", metrics,
                        {"command": "pretrain", "backend": cfg.backend.name, **depth_fields(backend),
                         "seconds": time.perf_counter() - t0})


def depth_fields(backend: Backend) -> dict[str, Any]:
    """When the inference propagation depth was selected on validation: the chosen depth and every choice's
    validation metric (``{}`` otherwise)."""
    scores = getattr(backend, "depth_scores_", None)
    if not scores:
        return {}
    return {"infer_layers": backend.module_.final_layers, "infer_layers_valid": {str(k): v for k, v in scores.items()}}


def complete_run(out: Path, cfg: Any, data: Interactions, model: Backend | DDRM, filename: str,
                 metrics: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """The run's JSON payload (``fields`` + what every run reports); rank 0 saves the checkpoint ``filename``;
    ``config.yaml`` and ``metrics.json`` are written and the training states removed."""
    res = model.result_
    payload = {
        **fields, "seed": cfg.seed, "data": data_info(data), "world_size": distributed.world_size(),
        "device": str(model.device_), "metrics": metrics, "best_epoch": res.best_epoch, "epochs_run": res.epochs_run,
        "epoch_seconds_mean": res.epoch_seconds_mean, "output": cfg.output, "checkpoint": str(out / filename),
        "still_improving": res.still_improving,
    }
    if distributed.is_main():  # one checkpoint and one warning, not one per rank
        model.save(out / filename, data, to_dict(cfg), metrics)
        if res.still_improving:
            logger.warning("the best validation is the last one, at the epoch cap (train.epochs = %d): the model may "
                           "still be improving, and a larger train.epochs may help", res.epoch_cap)
    write_run(out, cfg, payload)
    finish_run(out)
    return payload


def get_backend(cfg: TrainRunConfig, data: Interactions, quiet: bool = False, folder: Path | None = None,
                resume: bool = False) -> Backend:
    """Load ``backend_checkpoint`` or fit ``cfg.backend`` (training, or importing embeddings).

    With a run ``folder``, a backend fitted here is checkpointed to ``folder/backend.pt`` (its training state to
    ``folder/state-backend.pt``), and a resumed run reloads that file instead of training again.
    """
    if cfg.backend_checkpoint:
        return Backend.load(cfg.backend_checkpoint, data, cfg.train.device)
    if folder is not None and resume and (folder / "backend.pt").is_file():
        return Backend.load(folder / "backend.pt", data, cfg.pretrain.device)
    state = folder / "state-backend.pt" if folder is not None else None
    backend = Backend(cfg.backend, cfg.pretrain, cfg.eval, cfg.seed, quiet).fit(data, state)
    if folder is not None and distributed.is_main():
        backend.save(folder / "backend.pt", data, to_dict(cfg))
        (folder / "state-backend.pt").unlink(missing_ok=True)  # backend.pt is what a resumed run reloads
    return backend


def run_train(cfg: TrainRunConfig, quiet: bool = False, data: Interactions | None = None,
              resume: bool = False) -> dict[str, Any]:
    """Backend, then DDRM; evaluates both on valid + test and saves ``ddrm.pt`` + config + metrics.

    Training states live in ``output/state-backend.pt`` and ``output/state-ddrm.pt``; ``resume`` continues them.
    """
    out = start_run(cfg.output, cfg, "train", resume)
    with run_log(out, "train", resume):
        return _train(out, cfg, quiet, data, resume)


def _train(out: Path, cfg: TrainRunConfig, quiet: bool, data: Interactions | None, resume: bool) -> dict[str, Any]:
    data = data if data is not None else cfg.data.load(quiet=quiet)
    t0 = time.perf_counter()
    backend = get_backend(cfg, data, quiet, out, resume)
    backend_metrics = evaluate_splits(backend, data, cfg.eval, backend.device_)
    t1 = time.perf_counter()
    model = DDRM(backend, cfg.ddrm, cfg.train, cfg.eval, cfg.seed, quiet).fit(data, out / "state-ddrm.pt")
    metrics = evaluate_splits(model, data, cfg.eval, model.device_)
    return complete_run(out, cfg, data, model, "ddrm.pt", metrics, {
        "command": "train", "backend": backend.config.name, "backend_metrics": backend_metrics,
        **depth_fields(backend),
        **({"fusion": model.config.fusion} if model.config.fusion is not None else {}),
        **{f"{o}_valid": {f"{k:g}": v for k, v in scores.items()} for o, scores in model.selection_.items()},
        **({"selected": {o: getattr(model.config, o) for o in model.selection_}} if model.selection_ else {}),
        **({"bf16_probe": model.bf16_probe_} if model.bf16_probe_ else {}),
        "noise_to_signal": model.module_.diffusion.noise_to_signal(),
        "measured_noise_ratio": model.measured_noise_ratio(),
        "backend_seconds": t1 - t0, "ddrm_seconds": time.perf_counter() - t1})


def checkpoint_data_config(payload: dict[str, Any], overrides: dict[str, Any] | None = None) -> DataConfig:
    """The data section a checkpoint was trained with; ``overrides`` (``name``/``root``/``read``) win, and a new
    ``name`` replaces the saved section entirely."""
    from .config import build_config, deep_merge

    overrides = overrides or {}
    saved = {} if "name" in overrides else payload.get("config", {}).get("data", {})
    return build_config(DataConfig, overrides=deep_merge(saved, overrides))


CHECKPOINT_KINDS = ("backend", "ddrm", "baseline")


def load_model(path: str | os.PathLike[str], data: Interactions, device: str = "cpu") -> Backend | DDRM | Recommender:
    """A backend, DDRM or baseline checkpoint, whichever ``path`` holds."""
    from .baselines import load as load_baseline
    from .checkpoint import load_checkpoint

    kind = load_checkpoint(path, CHECKPOINT_KINDS)["kind"]
    if kind == "baseline":
        return load_baseline(path, data, device)
    return (DDRM if kind == "ddrm" else Backend).load(path, data, device)
