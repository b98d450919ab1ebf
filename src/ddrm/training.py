"""The one training loop of ddrm (backends, DDRM, DiffRec): an epoch of examples from the model's sampler, Adam,
validation, early stopping, resumable state, signals, NaN checks, torchrun. The hooks it calls: :mod:`ddrm.trainable`."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import logging
import math
import os
import signal
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from . import distributed
from .config.training import EvalConfig, TrainConfig
from .data.interactions import Interactions
from .errors import ConfigError, DDRMError
from .evaluation import evaluate
from .interrupt import StopFlag, TrainingInterrupted, graceful_signals
from .progress import progress
from .stopwatch import Stopwatch
from .train_state import LoopState, capture_rng, load_state, restore_rng, save_state, state_exists
from .trainable import TrainableModule

logger = logging.getLogger(__name__)
CHECK_EVERY = 20  # single-GPU training reads the loss (a host-device sync) once per this many steps; the progress
# bar's loss is refreshed at the same steps


def resolve_device(name: str) -> torch.device:
    """``auto`` -> cuda when available else cpu; a cuda device that is absent is a clear error."""
    if name == "auto":
        return distributed.device_for_rank(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available on this machine.")
    return distributed.device_for_rank(dev)


@dataclass
class TrainResult:
    """What a training run produced: best epoch, its validation metrics, and the history."""

    best_epoch: int = 0
    best_score: float = -math.inf
    best_valid: dict[str, float] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    epochs_run: int = 0
    seconds: float = 0.0
    epoch_seconds: list[float] = field(default_factory=list)
    cpu_seconds: float = 0.0  # the process's CPU time (all its threads): the work, whatever share of the machine it got
    epoch_cap: int = 0  # the run's train.epochs

    @property
    def still_improving(self) -> bool:
        """The run trained to its epoch cap and its best validation is the last one, after at least one earlier,
        worse one: more epochs might have helped (a larger ``train.epochs``)."""
        validated = sum("valid" in h for h in self.history)
        return validated >= 2 and self.epoch_cap > 0 and self.epochs_run == self.best_epoch == self.epoch_cap

    @property
    def epoch_seconds_mean(self) -> float:
        return sum(self.epoch_seconds) / len(self.epoch_seconds) if self.epoch_seconds else 0.0

    def to_dict(self) -> dict:
        """Everything, JSON-able (for training states)."""
        return {"best_epoch": self.best_epoch, "best_score": self.best_score, "best_valid": self.best_valid,
                "history": self.history, "epochs_run": self.epochs_run, "seconds": self.seconds,
                "epoch_seconds": self.epoch_seconds, "cpu_seconds": self.cpu_seconds, "epoch_cap": self.epoch_cap}

    @classmethod
    def from_dict(cls, d: dict) -> TrainResult:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})

    def summary(self) -> dict:
        """The JSON-able part kept in checkpoints."""
        return {"best_epoch": self.best_epoch, "best_valid": self.best_valid, "epochs_run": self.epochs_run,
                "seconds": self.seconds, "still_improving": self.still_improving}


class NonFiniteLoss(DDRMError):
    """A loss became NaN or inf."""


class _LossModule(torch.nn.Module):
    """``forward = model.loss``, so DistributedDataParallel can wrap a model whose training entry point is ``loss``."""

    def __init__(self, model: TrainableModule) -> None:
        super().__init__()
        self.model = model

    def forward(self, *batch: torch.Tensor) -> dict[str, torch.Tensor]:
        return self.model.loss(*batch)


def _optimizer(model: TrainableModule, cfg: TrainConfig, params: list | None) -> torch.optim.Adam | None:
    groups = params if params is not None else [{"params": list(model.parameters())}]
    if groups and not isinstance(groups[0], dict):
        groups = [{"params": groups}]
    groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in groups]
    groups = [g for g in groups if g["params"]]
    return torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay) if groups else None


def train_loop(
    model: TrainableModule,
    data: Interactions,
    cfg: TrainConfig,
    eval_cfg: EvalConfig,
    seed: int = 0,
    quiet: bool = False,
    desc: str = "train",
    device: torch.device | None = None,
    params: list | None = None,
    on_validation: Callable[[int, float], None] | None = None,
    state_path: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train ``model`` with Adam on the examples of its ``sampler`` (BPR triples unless it says otherwise),
    validating every ``eval_every`` epochs; keeps the best state.

    ``params`` may be a list of parameters or of Adam parameter groups (dicts with their own ``lr``).
    The model ends in the state of its best validation score (or the last state when ``epochs == 0``).
    ``on_validation(epoch, score)`` is called after every validation after which training goes on (not after the
    last epoch's, nor after the one that ends the run by ``patience``), with its ``eval.metric``: the tuner reports it
    to Optuna there, and may raise ``optuna.TrialPruned`` to stop the run; a run that trained to its end is never
    pruned. The whole validation history is in the returned :class:`TrainResult`.

    With ``state_path``: the full training state (weights, optimiser, RNG streams, position, best state, early-stopping
    counter) is written there at the end of every epoch; SIGINT / SIGTERM finish the current step, write the state and
    raise :class:`~ddrm.interrupt.TrainingInterrupted`; an existing state file is resumed from, bit-identically.

    Under torchrun (see :mod:`ddrm.distributed`) each step's global batch is split across ranks, the model runs inside
    DistributedDataParallel, validation users are sharded, and only rank 0 writes the state.
    """
    device = device or torch.device("cpu")
    result = TrainResult()
    opt = _optimizer(model, cfg, params)
    if cfg.epochs == 0 or opt is None:
        return result
    rng = np.random.default_rng(seed)
    sampler = model.sampler(data)
    cfg_dict = dataclasses.asdict(cfg)
    st = LoopState()
    if state_exists(state_path):
        st = load_state(state_path, desc, seed, cfg_dict, data)
        model.load_state_dict(st.model)
        opt.load_state_dict(st.optimizer)
        result = TrainResult.from_dict(st.result)
        rng.bit_generator.state = st.epoch_rng
        logger.info("%s: resuming from %s at epoch %d, step %d", desc, state_path, st.epoch, st.step)
    result.epoch_cap = cfg.epochs

    world, rank = distributed.world_size(), distributed.rank()
    loss_fn: Callable[..., dict[str, torch.Tensor]] = model.loss
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel

        model.set_rank(rank)
        ddp_ids = [device.index] if device.type == "cuda" else None
        ddp_args = inspect.signature(DistributedDataParallel.__init__).parameters  # buffers are constants here
        no_sync = {"forward_sync_buffers": False} if "forward_sync_buffers" in ddp_args else {"broadcast_buffers": False}
        loss_fn = DistributedDataParallel(_LossModule(model), device_ids=ddp_ids, **no_sync,
                                          find_unused_parameters=model.has_unused_parameters)
        quiet = quiet or rank != 0

    def save(epoch: int, step: int, epoch_loss: float, epoch_rng: dict) -> None:
        if state_path is None or rank != 0:
            return
        stamp()
        save_state(state_path, LoopState(
            epoch=epoch, step=step, epoch_loss=epoch_loss, epoch_rng=epoch_rng, rng=capture_rng(model), bad=st.bad,
            best_state=st.best_state, result=result.to_dict(), model=_cpu(model.state_dict()),
            optimizer=opt.state_dict()), desc, seed, cfg_dict, data)

    watch = Stopwatch((result.seconds, result.cpu_seconds))

    def stamp() -> None:  # the result's seconds and CPU seconds, every part's
        result.seconds, result.cpu_seconds = watch.seconds, watch.cpu_seconds or 0.0

    guard = graceful_signals() if state_path is not None else nullcontext(StopFlag())
    with guard as stop:
        for epoch in range(st.epoch, cfg.epochs + 1 if st.bad < cfg.patience else st.epoch):
            t0 = time.perf_counter()
            epoch_rng = copy.deepcopy(rng.bit_generator.state)
            model.train(True)
            model.on_epoch_start(epoch, rng)
            examples = tuple(torch.from_numpy(a).to(device) for a in sampler(rng))
            n = examples[0].shape[0]
            first, total = 0, 0.0
            if epoch == st.epoch and st.rng:  # resuming: the torch streams as they were when the state was written
                restore_rng(model, st.rng)
                first, total = st.step, st.epoch_loss
            n_steps = -(-n // cfg.batch_size)
            bar = progress(range(first, n_steps), desc=f"{desc} epoch {epoch}", leave=False, quiet=quiet,
                       initial=first, total=n_steps)
            # the running loss sum and a non-finite flag stay on the device; reading them waits for the device, so
            # on a single GPU that happens every CHECK_EVERY steps (the launch queue never drains in between),
            # elsewhere every step (before the update, so a non-finite loss never reaches the weights)
            every = CHECK_EVERY if _deferred_checks(device, world) else 1
            total_t = torch.tensor(total, dtype=torch.float64, device=device)
            bad_t = torch.zeros((), dtype=torch.bool, device=device)
            checked = first  # the steps before this one were checked
            for step in bar:
                model.on_step((epoch - 1) * n_steps + step)
                sl = slice(step * cfg.batch_size + rank, (step + 1) * cfg.batch_size, world)
                terms = loss_fn(*(x[sl] for x in examples))
                loss = terms["loss"]
                bad_t |= ~torch.isfinite(loss.detach())
                check = (step + 1) % every == 0 or step + 1 == n_steps or stop.requested
                if check:
                    bad_loss = bool(bad_t)
                    if world > 1:  # every rank must take the same branch, or the others wait forever
                        bad_loss, stop.signum = _agree(bad_loss, stop)
                    if bad_loss:
                        detail = ", ".join(f"{k}={float(v.detach()):.4g}" for k, v in terms.items())
                        kept = f"; the last good state is in {state_path}" if state_exists(state_path) else ""
                        where = f"step {step}" if step == checked else f"steps {checked}-{step}"
                        raise NonFiniteLoss(f"{desc}: non-finite loss at epoch {epoch}, {where} ({detail}); "
                                            f"try a lower learning rate{kept}.")
                    checked = step + 1
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total_t += loss.detach()
                if (step + 1) % CHECK_EVERY == 0 and not quiet:  # on a GPU, the same step as the check's read
                    bar.set_postfix(loss=f"{float(total_t) / (step + 1):.4f}", valid=f"{result.best_score:.4f}")
                if stop.requested and step + 1 < n_steps:
                    total = float(total_t)
                    save(epoch, step + 1, total, epoch_rng)
                    raise TrainingInterrupted(f"{desc} training stopped by {stop.name} at epoch {epoch}, step {step + 1} of "
                                              f"{n_steps}; state saved to {state_path}", stop.signum,
                                              str(Path(state_path).parent))
            bar.close()
            total = float(total_t)
            model.train(False)
            entry = {"epoch": epoch, "loss": total / max(n_steps, 1), "seconds": time.perf_counter() - t0}
            result.epoch_seconds.append(entry["seconds"])
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                metrics = evaluate(model.scorer(), data, "valid", eval_cfg.ks, eval_cfg.batch_size,
                                   device=device).metrics
                score = metrics[eval_cfg.metric]
                entry["valid"] = metrics
                if score > result.best_score:
                    result.best_score, result.best_epoch, result.best_valid = score, epoch, metrics
                    st.best_state = _cpu(model.state_dict())
                    st.bad = 0
                else:
                    st.bad += 1
                logger.info("%s epoch %d: loss %.4f, valid %s %.4f (best %.4f at %d)", desc, epoch, entry["loss"],
                            eval_cfg.metric, score, result.best_score, result.best_epoch)
            result.history.append(entry)
            result.epochs_run = epoch
            st.rng = {}
            save(epoch + 1, 0, 0.0, copy.deepcopy(rng.bit_generator.state))
            # the hook may stop the run (the tuner prunes there): not at the validation after which it ends anyway,
            # whose run is finished and whose best state is its result
            last = epoch == cfg.epochs or st.bad >= cfg.patience
            if on_validation is not None and "valid" in entry and not last:
                on_validation(epoch, entry["valid"][eval_cfg.metric])
            if world > 1:
                _, stop.signum = _agree(False, stop)
            if stop.requested and epoch < cfg.epochs and st.bad < cfg.patience:
                raise TrainingInterrupted(f"{desc} training stopped by {stop.name} after epoch {epoch}; state saved to "
                                          f"{state_path}", stop.signum, str(Path(state_path).parent))
            if st.bad >= cfg.patience:
                logger.info("%s: early stop at epoch %d (no improvement in %d validations)", desc, epoch, st.bad)
                break
    opt.zero_grad(set_to_none=True)
    distributed.barrier()
    if st.best_state is not None:
        model.load_state_dict(st.best_state)
    model.train(False)
    stamp()
    return result


def _deferred_checks(device: torch.device, world: int) -> bool:
    """Read the loss every :data:`CHECK_EVERY` steps instead of every step: on a single GPU, where each read waits
    for the device and drains the launch queue (CPU steps and multi-process runs check every step)."""
    return device.type == "cuda" and world == 1


def _agree(bad_loss: bool, stop: StopFlag) -> tuple[bool, int | None]:
    """All ranks learn whether any rank saw a non-finite loss or a stop signal (one small all-reduce per step)."""
    bad, sigint, sigterm = distributed.all_sum([float(bad_loss), float(stop.signum == signal.SIGINT),
                                                float(stop.signum == signal.SIGTERM)])
    signum = stop.signum or (signal.SIGINT if sigint else signal.SIGTERM if sigterm else None)
    return bad > 0, signum


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detached CPU copy of a state dict."""
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}
