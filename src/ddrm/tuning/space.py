"""Search spaces: YAML files that name, for each hyper-parameter, a range or a list of choices.

Format (one file per model; the shipped ones are in ``ddrm/spaces/``, also reachable as ``configs/spaces/``)::

    model: ease                     # what the space is for (checked against --model)
    params:                         # dotted config keys (flat constructor keys for the simple baselines)
      reg: {type: float, low: 1.0, high: 1.0e5, log: true}
      topk: {type: int, low: 10, high: 1000, log: true}
      dims: {type: categorical, choices: [[100, 1000], [300, 1000]]}
    fixed:                          # settings every trial takes (e.g. a longer epoch budget)
      train.epochs: 60

A ``float`` or ``int`` needs ``low < high`` (``log: true`` samples on a log scale, ``step`` rounds ints); a
``categorical`` needs at least one choice (lists and mappings are allowed as choices).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..config.loader import load_yaml, nest
from ..errors import ConfigError

KINDS = ("float", "int", "categorical")


@dataclass
class Param:
    """One searched hyper-parameter."""

    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: int | None = None
    choices: list[Any] = field(default_factory=list)

    def suggest(self, trial) -> Any:
        """The value an Optuna ``trial`` proposes for this parameter."""
        if self.kind == "float":
            return trial.suggest_float(self.name, self.low, self.high, log=self.log)
        if self.kind == "int":
            step = self.step or 1
            return trial.suggest_int(self.name, int(self.low), int(self.high), step=step, log=self.log)
        if all(_scalar(c) for c in self.choices):
            return trial.suggest_categorical(self.name, self.choices)
        return json.loads(trial.suggest_categorical(self.name, [json.dumps(c) for c in self.choices]))

    def encode(self, value: Any, where: str) -> Any:
        """A config value -> the value Optuna stores for it (to enqueue it as a trial's); a value the space cannot
        propose is one sentence beginning with ``where``."""
        if self.kind == "categorical":
            if all(_scalar(c) for c in self.choices):
                for c in self.choices:  # the choice itself (5, not 5.0); True is not the choice 1
                    if isinstance(c, bool) == isinstance(value, bool) and c == value:
                        return c
            else:
                text = json.dumps(value)
                if text in [json.dumps(c) for c in self.choices]:
                    return text
            raise ConfigError(f"{where}: the config's {self.name} = {_show(value)} is not among the space's choices "
                              f"({', '.join(_show(c) for c in self.choices)}).")
        number = isinstance(value, int | float) and not isinstance(value, bool)
        inside = number and self.low is not None and self.high is not None and self.low <= value <= self.high
        if self.kind == "int":
            inside = inside and int(value) == value and (int(value) - int(self.low or 0)) % (self.step or 1) == 0
        if not inside:
            raise ConfigError(f"{where}: the config's {self.name} = {_show(value)} is outside the space's {self.kind} range "
                              f"[{_show(self.low)}, {_show(self.high)}]" + (f" (step {self.step})" if self.step else "")
                              + ".")
        return int(value) if self.kind == "int" else float(value)

    def decode(self, stored: Any) -> Any:
        """A value as Optuna stores it (non-scalar choices are kept as JSON text) -> the config value."""
        if self.kind == "categorical" and not all(_scalar(c) for c in self.choices):
            return json.loads(stored)
        return stored


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _show(value: Any) -> str:
    """A value as the space file writes it (``1e-05``, ``[100, 1000]``, ``relu``)."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return json.dumps(value) if isinstance(value, list | tuple | dict) else str(value)


@dataclass
class SearchSpace:
    """The parameters searched for ``model`` and the settings fixed for every trial (``fixed``, a nested dict)."""

    model: str
    params: list[Param]
    fixed: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def suggest(self, trial) -> dict[str, Any]:
        """``{dotted key: value}`` for one trial."""
        return {p.name: p.suggest(trial) for p in self.params}

    def encode(self, values: dict[str, Any], where: str) -> dict[str, Any]:
        """``{dotted key: config value}`` of every searched parameter -> Optuna's params for ``enqueue_trial``."""
        return {p.name: p.encode(values[p.name], where) for p in self.params}

    def decode(self, params: dict[str, Any]) -> dict[str, Any]:
        """Optuna's stored params of a trial -> ``{dotted key: config value}``."""
        by_name = {p.name: p for p in self.params}
        return {k: by_name[k].decode(v) if k in by_name else v for k, v in params.items()}

    def describe(self) -> dict[str, Any]:
        """JSON-able summary (for the results file)."""
        out: dict[str, Any] = {}
        for p in self.params:
            if p.kind == "categorical":
                out[p.name] = {"choices": p.choices}
            else:
                out[p.name] = {"low": p.low, "high": p.high, **({"log": True} if p.log else {}),
                               **({"step": p.step} if p.step else {})}
        return out


def shipped_space_path(model: str) -> Path:
    """The space file shipped with ddrm for ``model`` (``ddrm/spaces/<model>.yaml``)."""
    return Path(str(resources.files("ddrm") / "spaces" / f"{model}.yaml"))


def shipped_spaces() -> list[str]:
    """Names of the models with a shipped search space."""
    folder = Path(str(resources.files("ddrm") / "spaces"))
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_space(path: str | os.PathLike[str], model: str | None = None) -> SearchSpace:
    """Read and check a space file; errors name the file and the parameter."""
    where = str(path)
    raw = load_yaml(path)
    unknown = sorted(set(raw) - {"model", "params", "fixed", "description"})
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} in a search space (use model, params, fixed).")
    if model is not None and raw.get("model") not in (None, model):
        raise ConfigError(f"{where}: this space is for model {raw['model']!r}, not {model!r}.")
    params_raw = raw.get("params") or {}
    if not isinstance(params_raw, dict):
        raise ConfigError(f"{where}: 'params' must map parameter names to ranges.")
    params = [_param(name, spec, where) for name, spec in params_raw.items()]
    fixed = raw.get("fixed") or {}
    if not isinstance(fixed, dict):
        raise ConfigError(f"{where}: 'fixed' must map config keys to values.")
    return SearchSpace(str(raw.get("model") or model or ""), params, nest(fixed), where)


def _number(value: Any) -> Any:
    """YAML 1.1 reads ``1.0e5`` (no sign in the exponent) as text: take it as the number it spells."""
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def _param(name: str, spec: Any, where: str) -> Param:
    at = f"{where}: parameter {name!r}"
    if not isinstance(spec, dict):
        raise ConfigError(f"{at} must be a mapping such as {{type: float, low: 0.001, high: 0.1, log: true}}.")
    kind = spec.get("type")
    if kind not in KINDS:
        raise ConfigError(f"{at} needs type float, int or categorical, got {kind!r}.")
    extra = sorted(set(spec) - {"type", "low", "high", "log", "step", "choices"})
    if extra:
        raise ConfigError(f"{at} has an unknown field {extra[0]!r}.")
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{at} needs a non-empty list of choices.")
        return Param(name, kind, choices=choices)
    low, high = _number(spec.get("low")), _number(spec.get("high"))
    for label, v in (("low", low), ("high", high)):
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ConfigError(f"{at} needs a numeric {label}, got {v!r}.")
    if kind == "int" and (int(low) != low or int(high) != high):
        raise ConfigError(f"{at} is an int range but low / high are not integers ({low}, {high}).")
    if not low < high:
        raise ConfigError(f"{at} has an empty range: low ({low}) must be below high ({high}).")
    log = bool(spec.get("log", False))
    if log and low <= 0:
        raise ConfigError(f"{at} is on a log scale, so low must be > 0, got {low}.")
    step = spec.get("step")
    if step is not None and (kind != "int" or not isinstance(step, int) or step < 1 or log):
        raise ConfigError(f"{at}: step must be a positive integer on a linear int range.")
    return Param(name, kind, float(low), float(high), log, step)
