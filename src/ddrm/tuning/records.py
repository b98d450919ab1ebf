"""A study's finished trials as a plain text file, to carry a study from one storage, machine or clone to another.

The file is JSON lines: one ``{"kind": "study", ...}`` line per study (name, direction, user attributes: the model,
metric and data fingerprint that ``ddrm tune`` checks on resume), then one ``{"kind": "trial", ...}`` line per
finished (complete, pruned or failed) trial in order: state, value, parameters with their distributions, the
intermediate validation values the pruner saw, user and system attributes, start and end times. Running trials are
left out: their work is lost with their process either way, and the study runs their budget again.

It is readable, diffs line by line as a study grows, and does not depend on the storage's schema, so a study's
progress can live in a repository (``benchmarks/tune_grid.py`` keeps one per grid study under
``benchmarks/studies/``) and be loaded into a fresh SQLite file on any machine.
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_open
from .storage import load_optuna

FORMAT = "ddrm-study-records/1"
FINISHED = ("COMPLETE", "PRUNED", "FAIL")
INTERRUPTED = "interrupted by"  # how the error of a trial stopped by a signal begins (ddrm.tuning.study)


def _time(t: datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def trial_record(trial) -> dict[str, Any]:
    """One finished ``optuna.trial.FrozenTrial`` as a JSON-ready dict."""
    from optuna.distributions import distribution_to_json

    return {"kind": "trial", "number": trial.number, "state": trial.state.name, "value": trial.value,
            "params": trial.params,
            "distributions": {k: json.loads(distribution_to_json(d)) for k, d in trial.distributions.items()},
            "intermediate_values": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
            "user_attrs": trial.user_attrs, "system_attrs": trial.system_attrs,
            "datetime_start": _time(trial.datetime_start), "datetime_complete": _time(trial.datetime_complete)}


def _finished(study) -> list:
    return [t for t in study.get_trials(deepcopy=False) if t.state.name in FINISHED]


def finished_trials(storage) -> int:
    """The number of finished (complete, pruned, failed) trials over every study of ``storage``: what
    :func:`export_studies` would write."""
    optuna = load_optuna()
    return sum(len(_finished(optuna.load_study(study_name=s.study_name, storage=storage)))
               for s in optuna.get_all_study_summaries(storage))


def export_studies(storage, path: str | Path) -> int:
    """Write every study of ``storage`` (an Optuna storage object or URL) with its finished trials to ``path``,
    atomically. Returns the number of trials written."""
    optuna = load_optuna()
    lines, n = [json.dumps({"kind": "format", "format": FORMAT})], 0
    for summary in sorted(optuna.get_all_study_summaries(storage), key=lambda s: s.study_name):
        study = optuna.load_study(study_name=summary.study_name, storage=storage)
        lines.append(json.dumps({"kind": "study", "study": summary.study_name, "direction": study.direction.name,
                                 "user_attrs": study.user_attrs}, sort_keys=True))
        for t in _finished(study):
            lines.append(json.dumps(trial_record(t), sort_keys=True))
            n += 1
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_open(path) as fh:
        fh.write("\n".join(lines) + "\n")
    return n


def read_records(path: str | Path) -> dict[str, dict[str, Any]]:
    """``{study name: {"direction", "user_attrs", "trials": [trial records]}}`` from a records file; a file that is
    not one is one sentence naming its line."""
    path = Path(path)
    studies: dict[str, dict[str, Any]] = {}
    current = None
    for k, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            kind = row["kind"]
            if kind == "format" and row["format"] != FORMAT:
                raise ConfigError(f"{path}: line {k}: format {row['format']!r}, this ddrm reads {FORMAT!r}.")
            if kind == "study":
                current = studies.setdefault(row["study"], {"direction": row["direction"],
                                                            "user_attrs": row["user_attrs"], "trials": []})
            elif kind == "trial":
                if current is None:
                    raise ConfigError(f"{path}: line {k}: a trial before any study line.")
                current["trials"].append(row)
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}: line {k}: not a study record ({type(exc).__name__}: {exc}).") from None
    return studies


def _frozen(optuna, row: dict[str, Any]):
    from optuna.distributions import json_to_distribution

    state = optuna.trial.TrialState[row["state"]]
    return optuna.trial.FrozenTrial(
        number=row["number"], state=state, value=row["value"],
        datetime_start=datetime.fromisoformat(row["datetime_start"]) if row["datetime_start"] else None,
        datetime_complete=datetime.fromisoformat(row["datetime_complete"]) if row["datetime_complete"] else None,
        params=row["params"],
        distributions={k: json_to_distribution(json.dumps(d)) for k, d in row["distributions"].items()},
        user_attrs=row["user_attrs"], system_attrs=row["system_attrs"],
        intermediate_values={int(k): v for k, v in row["intermediate_values"].items()}, trial_id=0)


def import_studies(path: str | Path, storage) -> dict[str, int]:
    """Load the studies of a records file into ``storage``: each study that the storage lacks (or holds with no
    trial) is created with its user attributes and finished trials; a study that already has trials is left as it
    is (its own storage is ahead of or beside the file). A trial a signal interrupted that no later trial continues
    has its parameters enqueued again (its training state stayed with its machine: they run from the start).
    Returns ``{study name: trials added}``."""
    optuna = load_optuna()
    have = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(storage)}
    added = {}
    for name, rec in read_records(path).items():
        if have.get(name, 0) > 0:
            added[name] = 0
            continue
        study = optuna.create_study(storage=storage, study_name=name, direction=rec["direction"].lower(),
                                    load_if_exists=True)
        for key, value in rec["user_attrs"].items():
            study.set_user_attr(key, value)
        study.add_trials([_frozen(optuna, row) for row in rec["trials"]])
        continued = {row["user_attrs"].get("continues_trial") for row in rec["trials"]}
        for row in rec["trials"]:
            if (row["state"] == "FAIL" and str(row["user_attrs"].get("error", "")).startswith(INTERRUPTED)
                    and row["number"] not in continued):
                study.enqueue_trial(row["params"], user_attrs={"continues_trial": row["number"]})
        added[name] = len(rec["trials"])
    return added
