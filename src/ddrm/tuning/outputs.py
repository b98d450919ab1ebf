"""What a study writes besides its storage: ``trials.csv``, the importance plot, and best.yaml's line on the trial of
the config's own values (``--include-config``)."""

from __future__ import annotations

import csv
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

from ..io import atomic_open, atomic_path
from .space import SearchSpace

logger = logging.getLogger(__name__)

ORIGIN = "origin"  # user attribute of the trial that runs the config's own values ("config")
STILL_IMPROVING = "still_improving"  # user attribute of a trial that ended at its epoch cap still improving


def config_trial(trials: list) -> dict[str, Any] | None:
    """The finished trial that ran the config's own values (``--include-config``): its number, state and validation
    value (None for a pruned or failed one); None when the study has none."""
    done = [t for t in trials if t.user_attrs.get(ORIGIN) == "config" and t.state.is_finished()]
    if not done:
        return None
    t = done[-1]
    value = t.value if t.state.name == "COMPLETE" and t.value is not None and not math.isnan(t.value) else None
    return {"number": t.number, "state": t.state.name.lower(), "valid": value}


def config_line(own: dict[str, Any], metric: str) -> str:
    """best.yaml's line on the trial of the config's own values."""
    result = f"valid {metric} {own['valid']:.4f}" if own["valid"] is not None else own["state"]
    return f"# the config's own values (--include-config): trial {own['number']}, {result}"


def write_trials_csv(path: Path, trials: list, space: SearchSpace) -> None:
    """One row per trial: number, state, validation value, seconds (wall clock), CPU seconds (the worker process's
    CPU time over all its threads: the trial's work, whatever share of a busy machine it got; trials from before
    2026-12-07 have none), where it was pruned, a trained trial's best epoch and whether it ended at its epoch cap
    still improving (``1``; trials from before 2026-12-08 have neither), worker, the machine it ran on (its seconds
    are that machine's), the code that computed it (``machine.code_version``: ddrm's version and git commit; none
    before 2026-12-07), error, origin (``config``: the config's own values, ``--include-config``), parameters."""
    names = [p.name for p in space.params]
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", "value", "seconds", "cpu_seconds", "pruned_at_epoch", "best_epoch",
                    STILL_IMPROVING, "worker", "machine", "code", "error", "origin", *names])
        for t in trials:
            params = space.decode(t.params) if t.params else {}
            w.writerow([t.number, t.state.name.lower(), "" if t.value is None or math.isnan(t.value) else t.value,
                        f"{t.user_attrs.get('seconds', 0.0):.2f}",
                        f"{t.user_attrs['cpu_seconds']:.2f}" if "cpu_seconds" in t.user_attrs else "",
                        t.user_attrs.get("pruned_at_epoch", ""), t.user_attrs.get("best_epoch", ""),
                        1 if t.user_attrs.get(STILL_IMPROVING) else "", t.user_attrs.get("worker", ""),
                        t.user_attrs.get("machine", ""), t.user_attrs.get("code", ""),
                        t.user_attrs.get("error", ""), t.user_attrs.get(ORIGIN, ""),
                        *[json.dumps(params[n]) if isinstance(params.get(n), list | dict) else params.get(n, "")
                          for n in names]])


def write_plot(study, path: Path) -> str | None:
    """Parameter importances (Optuna's default evaluator: PED-ANOVA in Optuna 5, fANOVA before) as a PNG, or the
    optimisation history when there is too little to rank; None without matplotlib or a complete trial. The
    evaluator's warnings about too few trials go to the log."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError:
        logger.warning("no plot: matplotlib is not installed (pip install 'ddrm[tune]')")
        return None
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if not complete:
        return None
    varied = {k for t in complete for k in t.params if len({str(u.params.get(k)) for u in complete}) > 1}
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            ranked = len(complete) >= 2 and varied
            ax = ovm.plot_param_importances(study) if ranked else ovm.plot_optimization_history(study)
        for w in caught:
            logger.info("importance plot: %s", w.message)
    except (ValueError, RuntimeError, ZeroDivisionError) as exc:
        logger.info("parameter importances unavailable (%s); plotting the optimisation history", exc)
        plt.close("all")
        ax = ovm.plot_optimization_history(study)
    fig = ax.figure
    fig.set_size_inches(8, max(3.0, 0.5 * len(complete[0].params) + 2))
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return str(path)
