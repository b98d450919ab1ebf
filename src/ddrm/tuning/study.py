"""``ddrm tune``: an Optuna study over one model's search space, scored on validation, resumable, shareable.

- Sampler: TPE (multivariate), seeded; pruner: median (default), successive halving or none, fed the validation
  metric every ``eval_every`` epochs of the trained models (closed-form baselines run whole).
- Storage: ``sqlite:///<output>/study.db`` by default, so an interrupted run resumes the same study; any Optuna RDB
  URL (``postgresql://...``, ``mysql://...``) or a journal file path lets several processes or machines fill one
  study at once. ``--trials N`` is the study's total of finished (complete + pruned) trials, whoever ran them.
- Ctrl-C (or SIGTERM) stops a trained model's trial at once, keeping its training state under
  ``<output>/trial-states/``: the trial is failed and its parameters enqueued, and the next run of the study (on this
  storage and output folder) continues that state where it stopped, bit-identically, after reporting to the pruner
  the validations it had made. A closed-form baseline's trial runs to its end first. Nothing is half-written.
- At the end, the best trial's config is fitted once more (which must reproduce its validation score), evaluated on
  test once, and written as a complete YAML with ``trials.csv``, a PNG and ``result.json``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import time
from pathlib import Path
from typing import Any

import yaml

from ..config.data import DataConfig
from ..config.tuning import TuneOptions
from ..data.interactions import Interactions
from ..errors import ConfigError, DDRMError
from ..interrupt import TrainingInterrupted, graceful_signals
from ..io import atomic_open, write_json
from ..machine import code_version, where_run
from ..stopwatch import Parts, Stopwatch, saved_parts
from ..training import TrainResult
from .objective import (
    Fitter,
    ModelSpec,
    base_config,
    check_keys,
    config_values,
    flatten,
    resolve_model,
    trial_config,
)
from .outputs import ORIGIN, STILL_IMPROVING, config_line, config_trial, write_plot, write_trials_csv
from .records import INTERRUPTED
from .space import SearchSpace, load_space, shipped_space_path
from .storage import (
    BEATS,
    RERUN,
    fail_orphans,
    hide_password,
    load_optuna,
    open_storage,
    wait_for_other_workers,
)

logger = logging.getLogger(__name__)


def _pruner(name: str, prune_after: int = 0):
    """The Optuna pruner; its steps are epochs, and none before ``prune_after`` prunes."""
    optuna = load_optuna()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=prune_after)
    if name == "halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=prune_after or "auto")
    return optuna.pruners.NopPruner()


def make_sampler(optuna, seed: int, budget: int):
    """Seeded multivariate TPE: random start points for a quarter of the budget (2 to 10), then TPE. Trials other
    workers are still running count as bad results (constant liar), so that workers sharing a study explore apart
    instead of proposing near-copies of the same best guess; a single worker never sees such a trial."""
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, max(2, budget // 4)), multivariate=True,
                                      constant_liar=True)


def resolve_space(spec: ModelSpec, path: str | None) -> SearchSpace:
    """``path``, or the union of the shipped spaces of the model (a backend + its denoiser's)."""
    if path is not None:
        return load_space(path, None)
    parts = [load_space(shipped_space_path(n), n) for n in spec.space_names]
    from ..config import deep_merge

    fixed: dict[str, Any] = {}
    for p in parts:
        fixed = deep_merge(fixed, p.fixed)
    return SearchSpace(spec.name, [x for p in parts for x in p.params], fixed,
                       " + ".join(f"shipped ddrm/spaces/{n}.yaml" for n in spec.space_names))


def study_budget(space: SearchSpace, trials: int) -> int:
    """The study's total of finished trials: ``trials``, or one when the space has nothing to search (MostPop)."""
    return trials if space.params else 1


def tune(opts: TuneOptions, file_cfg: dict[str, Any], data_flags: dict[str, Any], overrides: list[str],
         command: str = "", data: Interactions | None = None) -> dict[str, Any]:
    """Run (or continue) the study and return the JSON payload; see the module docstring."""
    opts.validate()
    code_version()  # read now, when this process's code is loaded: a commit made while the trials run is not theirs
    optuna = load_optuna()
    spec = resolve_model(opts.model)
    space = resolve_space(spec, opts.space)
    if not space.params and spec.name != "mostpop":
        raise ConfigError(f"{space.source}: the search space has no parameters.")
    budget = study_budget(space, opts.trials)
    check_keys(spec, [p.name for p in space.params] + flatten(space.fixed), space.source)
    base = base_config(spec, file_cfg, data_flags, overrides)
    # checked before anything is written: a config value the space cannot propose is one sentence
    own = (space.encode(config_values(spec, base, [p.name for p in space.params]), "--include-config")
           if opts.include_config and space.params else None)
    from ..config import build_config

    data_cfg = build_config(DataConfig, overrides=base.get("data", {}))
    data = data if data is not None else data_cfg.load(quiet=opts.quiet)
    study_name = opts.study or f"{spec.name}-{Path(data.name).name}"
    output = Path(opts.output or f"runs/tune/{study_name}")
    output.mkdir(parents=True, exist_ok=True)
    fitter = Fitter(spec, data, output, opts.quiet)
    metric = fitter.eval_config(trial_config(spec, base, space.fixed, {})).metric

    storage = open_storage(opts.storage, output, opts.stale_after)
    storage_shown = hide_password(opts.storage or str(output / "study.db"))
    study = optuna.create_study(storage=storage, study_name=study_name, direction="maximize",
                                pruner=_pruner(opts.pruner, opts.prune_after), load_if_exists=True)
    check_identity(study, study_name, storage_shown, {"model": spec.name, "metric": metric,
                                                      "data": data.fingerprint()},
                   {"pruner": opts.pruner, "prune_after": opts.prune_after})
    finished_states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    before = len(study.get_trials(deepcopy=False))
    # a resumed or parallel process must not replay the same random start points: shift the seed by what is there
    study.sampler = make_sampler(optuna, opts.seed + 1000 * opts.worker + before, budget)
    fail_orphans(study, storage, opts.stale_after)
    done = len(study.get_trials(deepcopy=False, states=finished_states))
    if own is not None and done < budget:  # the config's own values run next, unless a trial already has them
        study.enqueue_trial(own, user_attrs={ORIGIN: "config"}, skip_if_exists=True)
    t0 = time.perf_counter()

    cut: list[int] = []  # the trial a signal interrupted (its state kept)

    def objective(trial) -> float:
        trial.set_user_attr("worker", opts.worker)
        trial.set_user_attr(BEATS, True)  # a ddrm trial: on an RDB storage it beats, so fail_orphans skips it
        params = space.suggest(trial)
        cfg = trial_config(spec, base, space.fixed, params)

        def report(epoch: int, score: float) -> None:
            trial.report(score, epoch)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_epoch", epoch)
                raise optuna.TrialPruned(f"pruned at epoch {epoch} (valid {metric} {score:.4f})")

        state = trial_state_path(output, cfg)
        watch = Stopwatch(replay(trial, state, metric))
        kept, device = False, "cpu"
        try:
            model = fitter.fit(cfg, report, state)
            device = str(getattr(model, "device_", "cpu"))
            record_training(trial, getattr(model, "result_", None))
            value = fitter.validate(model, cfg)
        except TrainingInterrupted as exc:  # the state stays for the run that continues this trial
            kept = True
            cut.append(trial.number)
            trial.set_user_attr("error", f"{INTERRUPTED} {signal.Signals(exc.signum).name}; its training state is "
                                         f"continued by a later run")
            raise
        except (DDRMError, ValueError) as exc:  # an invalid value or combination, a diverging run: a failed trial
            trial.set_user_attr("error", str(exc))
            logger.warning("trial %d failed: %s", trial.number, exc)
            value = math.nan
        finally:
            for attr, seconds in watch.record().items():  # cpu_seconds left out when the state it continued had none
                trial.set_user_attr(attr, seconds)
            trial.set_user_attr("machine", where_run(device))  # its seconds are this machine's
            trial.set_user_attr("code", code_version())  # and its value this code's
            if not kept:
                state.unlink(missing_ok=True)
        return value

    with graceful_signals("stopping the study after the running trial (a trained model's keeps its state)") as stop:
        def after_trial(st, trial) -> None:
            value = f"{trial.value:.4f}" if trial.value is not None and not math.isnan(trial.value) else "-"
            best = _best_value(st)
            logger.info("trial %d %s: valid %s %s in %.1f s (best %s)", trial.number, trial.state.name.lower(),
                        metric, value, trial.user_attrs.get("seconds", 0.0),
                        f"{best:.4f}" if best is not None else "-")
            write_trials_csv(output / "trials.csv", st.get_trials(deepcopy=False), space)  # progress, readable now
            if stop.requested:
                st.stop()

        remaining = budget - done
        if remaining > 0:
            logger.info("study %s: %d trials finished, running up to %d more (%s)", study_name, done, remaining,
                        space.source)
            try:
                study.optimize(objective, n_trials=remaining, timeout=opts.timeout, gc_after_trial=True,
                               callbacks=[after_trial,
                                          optuna.study.MaxTrialsCallback(budget, states=finished_states)])
            except TrainingInterrupted as exc:  # Optuna failed the trial; its parameters run next, from its state
                stopped = next(t for t in study.get_trials(deepcopy=False) if t.number == cut[0])
                origin = {ORIGIN: stopped.user_attrs[ORIGIN]} if ORIGIN in stopped.user_attrs else {}
                study.enqueue_trial(stopped.params, user_attrs={"continues_trial": cut[0], **origin})
                stop.signum = exc.signum
    if opts.final and not cut and not stop.requested:
        wait_for_other_workers(study, storage, opts.stale_after)
    trials = study.get_trials(deepcopy=False)
    write_trials_csv(output / "trials.csv", trials, space)
    if cut:
        raise TrainingInterrupted(f"tuning stopped by {stop.name} during trial {cut[0]}, whose training state is "
                                  f"kept and continued by the next run; {output / 'trials.csv'} lists the finished "
                                  f"trials", stop.signum, str(output), RERUN)
    if stop.requested:
        raise TrainingInterrupted(f"tuning stopped by {stop.name} after trial {trials[-1].number if trials else 0}; "
                                  f"{output / 'trials.csv'} lists the finished trials", stop.signum, str(output), RERUN)
    counts = {s.name.lower(): sum(t.state == s for t in trials) for s in optuna.trial.TrialState}
    counts["interrupted"] = sum(str(t.user_attrs.get("error", "")).startswith(INTERRUPTED) for t in trials)
    counts["fail"] -= counts["interrupted"]  # interrupted trials are continued, not failed by their parameters
    payload: dict[str, Any] = {
        "command": "tune", "model": spec.name, "study": study_name, "storage": storage_shown, "metric": metric, "space": space.describe(), "space_file": space.source,
        "trials": counts, "budget": budget, "pruner": opts.pruner,
        "prune_after": opts.prune_after, "seed": opts.seed,
        "data": {"name": data.name, "fingerprint": data.fingerprint()}, "output": str(output),
        "trials_csv": str(output / "trials.csv"), "seconds": time.perf_counter() - t0,
    }
    if _best_value(study) is None:
        raise ConfigError(f"study {study_name!r}: no trial completed (see {output / 'trials.csv'}).")
    best = study.best_trial
    best_params = space.decode(best.params)
    payload["best"] = {"number": best.number, "params": best_params, "valid": best.value,
                       "seconds": best.user_attrs.get("seconds")}
    capped = [t.number for t in trials if t.state.name == "COMPLETE" and t.user_attrs.get(STILL_IMPROVING)]
    if capped:
        payload["still_improving"] = capped
    if best.number in capped:
        payload["best"]["still_improving"] = True
        logger.warning("the best trial (%d) ended at its epoch cap still improving, as did %d of the %d complete "
                       "trials: a larger train.epochs in the starting config may find more", best.number, len(capped),
                       counts.get("complete", 0))
    own_trial = config_trial(trials)
    if own_trial is not None:
        payload["config_trial"] = own_trial
    payload["plot"] = write_plot(study, output / "importance.png")
    if opts.final:
        try:
            payload.update(finish(fitter, spec, base, space, best_params, best.value, output, payload, command))
        except TrainingInterrupted as exc:  # the refit's state is kept: the next run continues it
            exc.how = RERUN
            raise
    write_json(output / "result.json", payload)
    return payload


def check_identity(study, name: str, shown: str, identity: dict[str, Any], settings: dict[str, Any]) -> None:
    """Record on a new study, and check on a resumed one, what its trials are comparable under: the model, the
    metric and the data (``identity``: another value is another study), and the pruner settings (``settings``: a
    budget stated as "N trials, pruner P from epoch E" only holds if every trial ran under them). A study made
    before a key was recorded takes the current value. A mismatch is one sentence naming the flag to pass."""
    flags = {"pruner": "--pruner", "prune_after": "--prune-after"}
    for key, value in {**identity, **settings}.items():
        seen = study.user_attrs.get(key)
        if seen is None:
            study.set_user_attr(key, value)
        elif seen != value and key in settings:
            raise ConfigError(f"study {name!r} in {shown} was run with {flags[key]} {seen}, not {value}: pass "
                              f"{flags[key]} {seen} to continue it, or choose another --study or --output.")
        elif seen != value:
            raise ConfigError(f"study {name!r} in {shown} "
                              f"was made with {key} {seen!r}, not {value!r}; choose another --study or --output.")


STATES = "trial-states"


def trial_state_path(output: Path, cfg: dict[str, Any]) -> Path:
    """Where a trial of config ``cfg`` keeps its training state: named by a digest of the whole config, so a trial
    run again with the same parameters (enqueued after an interruption, or retried after its worker was killed)
    finds it, and one of another base config does not."""
    digest = hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
    (output / STATES).mkdir(parents=True, exist_ok=True)
    return output / STATES / f"{digest}.pt"


def replay(trial, state: Path, metric: str) -> Parts:
    """Before a trial continues the training state ``state`` (when there is one): report to the pruner the
    validations the interrupted run made (it judged them then), note where it resumes, and return the seconds and
    CPU seconds that run had trained (None: a state written before CPU seconds were counted). A state that cannot
    be read is removed, with a warning, and the trial starts over."""
    result = kept_result(state, f"trial {trial.number}")
    if result is None:
        return saved_parts(None)
    for entry in result.get("history", []):
        if "valid" in entry:
            trial.report(float(entry["valid"][metric]), int(entry["epoch"]))
    trial.set_user_attr("resumed_at_epoch", int(result.get("epochs_run", 0)) + 1)
    logger.info("trial %d: continuing the training state %s after epoch %d", trial.number, state,
                result.get("epochs_run", 0))
    return saved_parts(result)


def kept_result(state: Path, who: str) -> dict[str, Any] | None:
    """The training result (history, epochs run, seconds trained) saved in the kept training state ``state``, or
    None when there is none; a state that cannot be read is removed, with a warning naming ``who`` owned it, and
    the training starts over."""
    if not state.is_file():
        return None
    from ..checkpoint import load_checkpoint

    try:
        return load_checkpoint(state, "train_state")["result"]
    except (DDRMError, KeyError) as exc:
        logger.warning("%s: its training state %s cannot be continued (%s): starting over", who, state, exc)
        state.unlink(missing_ok=True)
        return None


def record_training(trial, result: TrainResult | None) -> None:
    """A trained trial's best epoch, and whether it ended at its epoch cap still improving
    (:attr:`~ddrm.training.TrainResult.still_improving`), as user attributes (trials.csv's columns)."""
    if not isinstance(result, TrainResult) or not result.epochs_run:
        return
    trial.set_user_attr("best_epoch", result.best_epoch)
    if result.still_improving:
        trial.set_user_attr(STILL_IMPROVING, True)


def _best_value(study) -> float | None:
    try:
        return float(study.best_value)
    except ValueError:  # no complete trial yet
        return None


def finish(fitter: Fitter, spec: ModelSpec, base: dict[str, Any], space: SearchSpace, params: dict[str, Any],
           best_valid: float, output: Path, payload: dict[str, Any], command: str) -> dict[str, Any]:
    """Refit the best config once, check it reproduces the trial's validation score, evaluate test once, and write
    ``best.yaml`` (the complete config the matching ``ddrm`` command accepts) and the refitted model as
    ``best.pt``. The refit keeps a training state like a trial's: SIGINT / SIGTERM stop it, and the next run of the
    study continues it."""
    from ..runs import evaluate_splits

    cfg = trial_config(spec, base, space.fixed, params)
    state = trial_state_path(output, cfg)  # a refit stopped by a signal is continued by the next run
    kept = kept_result(state, "refit")
    if kept is not None:
        logger.info("refit: continuing its training state %s", state)
    watch = Stopwatch(saved_parts(kept))  # every part's seconds
    model = fitter.fit(cfg, state=state)
    state.unlink(missing_ok=True)
    took = watch.record("refit_seconds", "refit_cpu_seconds")
    ev = fitter.eval_config(cfg)
    metrics = evaluate_splits(model, fitter.data, ev, getattr(model, "device_", "cpu"))
    valid = metrics["valid"][ev.metric]
    if not math.isclose(valid, best_valid, rel_tol=1e-4, abs_tol=1e-6):
        logger.warning("the refitted best config scores valid %s %.6f, the trial %.6f (not bit-reproducible here)",
                       ev.metric, valid, best_valid)
    dataset = Path(fitter.data.name).name
    full = fitter.complete_config(cfg, model, f"runs/{dataset}/tuned/{spec.name}")
    checkpoint = output / "best.pt"  # the refitted model itself, for ddrm evaluate / recommend / serve --checkpoint
    model.save(checkpoint, fitter.data, full, metrics)
    command_word = {"baseline": f"ddrm baseline {spec.name}", "pretrain": "ddrm pretrain", "train": "ddrm train"}
    header = [f"# {spec.name} on {fitter.data.name}, tuned by: {command}" if command else
              f"# {spec.name} on {fitter.data.name}, tuned with ddrm tune",
              f"# budget: {payload['budget']} trials ({payload['trials'].get('complete', 0)} complete, "
              f"{payload['trials'].get('pruned', 0)} pruned, {payload['trials'].get('fail', 0)} failed"
              + (f", {payload['trials']['interrupted']} interrupted and continued"
                 if payload["trials"].get("interrupted") else "") + "), "
              f"TPE seed {payload['seed']}, pruner {payload['pruner']}"
              + (f" from epoch {payload['prune_after']}" if payload["prune_after"] else "")
              + f", space {payload['space_file']}",
              f"# best trial {payload['best']['number']}: valid {ev.metric} {best_valid:.4f}; this config refitted: "
              f"valid {valid:.4f}, test {ev.metric} {metrics['test'][ev.metric]:.4f} (test evaluated once, here)",
              *([config_line(payload["config_trial"], ev.metric)] if "config_trial" in payload else []),
              *([f"# the best trial ended at its epoch cap still improving (as did {len(payload['still_improving'])} "
                 f"of the complete trials): a larger train.epochs may find more"]
                if payload["best"].get("still_improving") else []),
              f"# run it with: {command_word[spec.kind]} --config best.yaml",
              f"# the refitted model: {checkpoint} (ddrm evaluate / recommend / serve --checkpoint)"]
    with atomic_open(output / "best.yaml", "w", encoding="utf-8") as fh:
        fh.write("\n".join(header) + "\n" + yaml.safe_dump(full, sort_keys=False))
    return {"best_config": str(output / "best.yaml"), "metrics": metrics, "refit_valid": valid,
            **took, "best_checkpoint": str(checkpoint)}
