"""Where a study lives: opening its Optuna storage (SQLite by default, any RDB URL or a journal file), heartbeats, and
the trials of killed workers (failed and retried), so several processes or machines can share one study."""

from __future__ import annotations

import logging
import re
import time
import warnings
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..interrupt import TrainingInterrupted, graceful_signals
from ..io import file_lock

logger = logging.getLogger(__name__)

RERUN = "Run the same command again to continue the study."


def load_optuna():
    """Optuna, its own logging quietened (ddrm logs each trial itself), or one sentence on how to install it."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("ddrm tune needs Optuna: pip install 'ddrm[tune]'.") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def hide_password(url: str) -> str:
    """A storage URL as shown to the user: its password, if any, replaced by ***."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def open_storage(url: str | None, output: Path, stale_after: int = 600):
    """An Optuna storage: ``url`` with a scheme is an RDB URL, without one a journal file; None = SQLite in
    ``output``. A storage that cannot be opened is one sentence naming it.

    An RDB storage records a heartbeat of every running trial; a trial silent for ``stale_after`` seconds (its
    process or machine was killed) is marked failed by the next worker that starts a trial, and its parameters are
    enqueued once more, so a killed run loses only its running trial's time since its last epoch (the retry finds
    the training state it kept, see ``ddrm.tuning.study.trial_state_path``). A journal file has no heartbeats.

    Workers that start together on a new storage race to create its schema. For an SQLite file the creation is
    serialised by a lock file beside it; a server database's losing worker sees the schema half-made (a duplicate
    key or table) and retries until it finds it whole.
    """
    optuna = load_optuna()
    if url is None:
        output.mkdir(parents=True, exist_ok=True)
        url = f"sqlite:///{output / 'study.db'}"
    shown, attempt = hide_password(url), 0
    while True:
        try:
            if "://" not in url:
                from optuna.storages.journal import JournalFileBackend

                return optuna.storages.JournalStorage(JournalFileBackend(url))
            beat = _heartbeat(optuna, stale_after)
            if url.startswith("sqlite:///"):
                with file_lock(Path(url[len("sqlite:///"):]).with_suffix(".lock")):
                    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}}, **beat)
            return optuna.storages.RDBStorage(url, **beat)
        except Exception as exc:  # sqlalchemy / driver errors come in many types; each is one sentence for the user
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            attempt += 1
            racing = type(exc).__name__ == "IntegrityError" or "already exists" in reason or "locked" in reason
            if attempt < 5 and racing:
                time.sleep(0.5 * attempt)
                continue
            raise ConfigError(f"--storage {shown}: cannot open the study storage ({type(exc).__name__}: "
                              f"{reason[:200]}).") from None


def _heartbeat(optuna, stale_after: int) -> dict[str, Any]:
    """RDBStorage's heartbeat settings: a beat every ``stale_after / 4`` s (at most 60 s), a silent trial failed after
    ``stale_after`` s and retried once (Optuna >= 4.9 names the callback for stale trials; older ones the generic)."""
    kw: dict[str, Any] = {"heartbeat_interval": max(1, min(60, stale_after // 4)), "grace_period": stale_after}
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    if retry is not None:
        kw["heartbeat_stale_trial_callback"] = retry(max_retry=1)
    else:
        kw["failed_trial_callback"] = optuna.storages.RetryFailedTrialCallback(max_retry=1)
    return kw


def has_heartbeats(storage) -> bool:
    """Whether ``storage`` (as ``open_storage`` made it) records heartbeats: an RDB storage does, a journal file not."""
    return isinstance(storage, load_optuna().storages.RDBStorage) and storage.get_heartbeat_interval() is not None


BEATS = "heartbeats"


def fail_orphans(study, storage, stale_after: float) -> list[int]:
    """Fail, and retry once, the running trials of ``study`` on ``storage`` (as ``open_storage`` made it) that
    never recorded a heartbeat and started over ``stale_after`` seconds ago; returns their numbers.

    Optuna's own stale check only sees trials with a heartbeat. A trial whose worker recorded none (a ddrm from
    before heartbeats, or a plain Optuna script without them, that was killed) would otherwise stay ``running`` for
    ever. Every ddrm trial marks itself with the user attribute ``heartbeats`` when it starts, so the trials found
    here are exactly those of such workers; one of them still alive after ``stale_after`` seconds would be failed too.
    """
    import datetime as dt

    optuna = load_optuna()
    if not has_heartbeats(storage):
        return []
    retry = storage.get_heartbeat_stale_trial_callback() or storage.get_failed_trial_callback()
    cutoff = dt.datetime.now() - dt.timedelta(seconds=stale_after)
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        if BEATS in t.user_attrs or t.datetime_start > cutoff:
            continue
        try:
            if not storage.set_trial_state_values(t._trial_id, state=optuna.trial.TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:  # another worker got there first
            continue
        logger.warning("trial %d: running since %s without a heartbeat (its worker was killed): failed, retried once",
                       t.number, t.datetime_start.isoformat(" ", "seconds"))
        failed.append(t.number)
        if retry is not None:
            retry(study, storage.get_trial(t._trial_id))
    return failed


RUNNING_POLL_SECONDS = 5.0


def wait_for_other_workers(study, storage, stale_after: float) -> None:
    """Before the refit, wait until no trial of the study is running: the last trials of the other workers sharing it
    belong to the budget, and the best trial (the one refitted and evaluated on test) must be chosen among all of
    them. A worker that died meanwhile does not hold the wait for ever: its trial is failed by the heartbeat check
    (``stale_after``; a journal file has no heartbeats, so there the refit goes ahead, saying which trials it did not
    wait for). SIGINT / SIGTERM stop the wait (``TrainingInterrupted``; the next run refits)."""
    optuna = load_optuna()
    running = optuna.trial.TrialState.RUNNING
    beats = has_heartbeats(storage)
    others = study.get_trials(deepcopy=False, states=(running,))
    if not others:
        return
    numbers = ", ".join(str(t.number) for t in others)
    if not beats:
        logger.warning("trials %s are still running in other workers and this storage has no heartbeats: the best "
                       "trial is chosen among the finished ones", numbers)
        return
    logger.warning("waiting for trials %s, still running in other workers, before choosing the best trial", numbers)
    with graceful_signals("stopping the wait; the next run refits the best trial") as stop:
        while not stop.requested:
            optuna.storages.fail_stale_trials(study)
            fail_orphans(study, storage, stale_after)
            if not study.get_trials(deepcopy=False, states=(running,)):
                return
            time.sleep(RUNNING_POLL_SECONDS)  # a signal is seen at the next poll
    raise TrainingInterrupted(f"tuning stopped by {stop.name} while waiting for trials {numbers} of other workers; "
                              f"the next run refits the best trial", stop.signum, None, RERUN)
