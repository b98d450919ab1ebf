"""What one tuning trial runs: a model name -> its config, a fit on train, and the validation metric.

Three kinds of model share this path:

- ``baseline``: the simple baselines (``mostpop``, ``itemknn``, ``rp3beta``, ``ease``, ``ials``, ``diffrec``,
  ``multvae``); their config is ``{data, eval, <name>: {constructor parameters}}``, what ``ddrm baseline NAME
  --config`` reads;
- ``pretrain``: the BPR backends ``mf``, ``lightgcn``, ``sgl``, optionally with T-CE / R-CE (``lightgcn-tce``,
  ``mf-rce``, ...); their config is a ``ddrm pretrain`` config;
- ``train``: ``ddrm``, DDRM on a fixed backend (``backend_checkpoint``, or one fitted once per process); its config
  is a ``ddrm train`` config.

The test split is never looked at here: trials are scored on validation only.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import logging
import operator
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import build_config, deep_merge, nest, parse_overrides, to_dict
from ..config.training import EvalConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from ..evaluation import evaluate

logger = logging.getLogger(__name__)

TRAINED_BACKENDS = ("mf", "lightgcn", "sgl")
DENOISERS = ("tce", "rce")
Report = Callable[[int, float], None]


def model_names() -> list[str]:
    """Every name ``ddrm tune --model`` accepts."""
    from ..baselines import BASELINES

    return [*BASELINES, *TRAINED_BACKENDS, *(f"{b}-{d}" for b in TRAINED_BACKENDS for d in DENOISERS), "ddrm"]


@dataclass
class ModelSpec:
    """A tunable model: its ``kind`` (baseline / pretrain / train), backend and denoiser where it has them, and the
    shipped space files whose union is its default search space."""

    name: str
    kind: str
    backend: str | None = None
    denoise: str | None = None

    @property
    def space_names(self) -> list[str]:
        if self.kind == "pretrain":
            return [self.backend, *([self.denoise] if self.denoise else [])]  # type: ignore[list-item]
        return [self.name]

    @property
    def config_class(self) -> type:
        from ..config.runs import PretrainConfig, TrainRunConfig

        return {"pretrain": PretrainConfig, "train": TrainRunConfig}[self.kind]


def resolve_model(name: str) -> ModelSpec:
    """``"lightgcn-tce"`` -> ModelSpec(kind="pretrain", backend="lightgcn", denoise="tce"); unknown names raise."""
    from ..baselines import BASELINES

    key = name.lower()
    if key in BASELINES:
        return ModelSpec(key, "baseline")
    if key == "ddrm":
        return ModelSpec(key, "train")
    backend, _, denoise = key.partition("-")
    if backend in TRAINED_BACKENDS and denoise in ("", *DENOISERS):
        return ModelSpec(key, "pretrain", backend, denoise or None)
    raise ConfigError(f"unknown model {name!r} for --model; choose one of {', '.join(model_names())}.")


def base_config(spec: ModelSpec, file_cfg: dict[str, Any], data_flags: dict[str, Any],
                overrides: list[str]) -> dict[str, Any]:
    """The config every trial starts from: the ``--config`` file (for a baseline: its ``data`` / ``eval`` sections
    and the model's own section), the model's identity, ``--data`` flags and ``--set`` overrides."""
    if spec.kind == "baseline":
        known = {"data", "eval", spec.name}
        cfg = {k: v for k, v in file_cfg.items() if k in known}
    else:
        cfg = dict(file_cfg)
    cfg.pop("output", None)
    if spec.kind == "pretrain":
        cfg = deep_merge(cfg, {"backend": {"name": spec.backend, "denoise": spec.denoise or "none"}})
    if data_flags:
        cfg = deep_merge(cfg, {"data": data_flags})
    return deep_merge(cfg, parse_overrides(overrides))


def trial_config(spec: ModelSpec, base: dict[str, Any], fixed: dict[str, Any], params: dict[str, Any]
                 ) -> dict[str, Any]:
    """``base`` < the space's ``fixed`` settings < this trial's ``params`` (dotted keys). A baseline's keys are its
    constructor parameters, placed in its own section."""
    nested = nest(params)
    if spec.kind == "baseline":
        return deep_merge(base, {spec.name: deep_merge(fixed, nested)})
    return deep_merge(deep_merge(base, fixed), nested)


def config_values(spec: ModelSpec, base: dict[str, Any], keys: list[str]) -> dict[str, Any]:
    """The values the config every trial starts from (``base``, its defaults filled in) gives the dotted ``keys``: a
    baseline's from the baseline its section builds (``Recommender.params``), a trained model's from its run config."""
    if spec.kind == "baseline":
        from ..baselines import build

        values = build(spec.name, **base.get(spec.name, {})).params()
        return {k: values[k] for k in keys}
    cfg = to_dict(build_config(spec.config_class, overrides=base))
    return {k: functools.reduce(operator.getitem, k.split("."), cfg) for k in keys}


def check_keys(spec: ModelSpec, keys: list[str], where: str) -> None:
    """Every searched / fixed key must be a parameter of the model (one sentence naming the first one that is not)."""
    for key in keys:
        if spec.kind == "baseline":
            from ..baselines import parameters

            allowed = parameters(spec.name)
            if key not in allowed:
                raise ConfigError(f"{where}: unknown parameter {key!r} for {spec.name}; allowed: {', '.join(allowed)}.")
            continue
        if not _has_key(spec.config_class, key.split("."), spec.backend):
            raise ConfigError(f"{where}: unknown parameter {key!r} for {spec.name} (not a key of its "
                              f"'ddrm {spec.kind}' config).")
        if spec.kind == "train" and key.split(".")[0] in ("backend", "backend_checkpoint", "pretrain"):
            raise ConfigError(f"{where}: {key!r} changes the backend, which stays fixed while DDRM is tuned; "
                              f"tune the backend on its own first.")


def _has_key(cls: type, parts: list[str], backend: str | None = None) -> bool:
    """Whether the dotted key ``parts`` is a field of ``cls``; the backend section is the config class of the
    model's own backbone (``backend.ssl_ratio`` is a key for sgl, not for mf)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if parts[0] not in fields:
        return False
    if len(parts) == 1:
        return True
    tp = typing.get_type_hints(cls)[parts[0]]
    resolve = getattr(tp, "resolve_variant", None)
    if backend is not None and callable(resolve):
        tp = resolve({"name": backend})[0]
    return dataclasses.is_dataclass(tp) and _has_key(tp, parts[1:], backend)


def flatten(cfg: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted leaf keys of a nested dict."""
    out: list[str] = []
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        out.extend(flatten(v, key + ".") if isinstance(v, dict) else [key])
    return out


class Fitter:
    """Fits one trial's config on ``data`` and scores it on validation; holds what trials share (the data and, for
    DDRM, the backend it runs on, fitted or loaded once)."""

    def __init__(self, spec: ModelSpec, data: Interactions, output: Path, quiet: bool = True) -> None:
        self.spec, self.data, self.output, self.quiet = spec, data, output, quiet
        self._backend = None
        self.backend_checkpoint: str | None = None

    def eval_config(self, cfg: dict[str, Any]) -> EvalConfig:
        return build_config(EvalConfig, overrides=cfg.get("eval", {}))

    def fit(self, cfg: dict[str, Any], report: Report | None = None, state: Path | None = None):
        """The fitted model of ``cfg`` (``report(epoch, score)`` after every validation of a trained model).

        ``state``: the training state file of a trained model (DiffRec included), written every epoch and on SIGINT /
        SIGTERM, which then raise :class:`~ddrm.interrupt.TrainingInterrupted`; an existing one is continued."""
        if self.spec.kind == "baseline":
            return self._fit_baseline(cfg, report, state)
        run_cfg = build_config(self.spec.config_class, overrides=cfg)
        if self.spec.kind == "pretrain":
            from ..backends import Backend

            return Backend(run_cfg.backend, run_cfg.train, run_cfg.eval, run_cfg.seed, True).fit(
                self.data, state, on_validation=report)
        from ..model import DDRM

        backend = self.backend(run_cfg)
        if not run_cfg.ddrm.freeze_backend:  # joint training changes the backend: every trial gets its own copy
            backend = copy.deepcopy(backend)
        return DDRM(backend, run_cfg.ddrm, run_cfg.train, run_cfg.eval, run_cfg.seed, True).fit(
            self.data, state, on_validation=report)

    def _fit_baseline(self, cfg: dict[str, Any], report: Report | None, state: Path | None = None):
        from ..baselines import build, run_settings

        model = build(self.spec.name, **{**cfg.get(self.spec.name, {}), **run_settings(self.spec.name, quiet=True)})
        if state is not None and "state_path" in inspect.signature(model.fit).parameters:  # a trained baseline
            return model.fit(self.data, on_validation=report, state_path=state)
        return model.fit(self.data, on_validation=report)

    def backend(self, run_cfg):
        """DDRM's backend: ``backend_checkpoint``, else fitted once into ``output/backend.pt`` (reused on resume)."""
        if self._backend is None:
            from ..runs import get_backend

            self._backend = get_backend(run_cfg, self.data, self.quiet, self.output, resume=True)
            self.backend_checkpoint = run_cfg.backend_checkpoint or str(self.output / "backend.pt")
        return self._backend

    def validate(self, model, cfg: dict[str, Any]) -> float:
        """The validation ``eval.metric`` of a fitted model."""
        ev = self.eval_config(cfg)
        return float(evaluate(model, self.data, "valid", ev.ks, ev.batch_size,
                              device=getattr(model, "device_", "cpu")).metrics[ev.metric])

    def complete_config(self, cfg: dict[str, Any], model, output: str) -> dict[str, Any]:
        """The config that the matching ``ddrm`` command accepts unchanged: every model setting written out, the data
        section as given (checked by building it)."""
        from ..config.data import DataConfig

        data = dict(cfg.get("data", {}))
        build_config(DataConfig, overrides=data)
        if self.spec.kind == "baseline":
            params = {k: v for k, v in model.params().items() if k != "quiet"}
            return {"data": data, "eval": to_dict(self.eval_config(cfg)), self.spec.name: to_dict(params)}
        full = to_dict(build_config(self.spec.config_class, overrides=cfg))
        full["data"], full["output"] = data, output
        if self.spec.kind == "train":
            full["backend_checkpoint"] = self.backend_checkpoint
        return full
