"""Where an experiment's data and configs come from: the dataset's cells' data section (its own noise policy), and
each model's config: hand-set (``configs/<dataset>/``), tuned (``configs/<dataset>/tuned/``, with ``--tuned``) or the
tiny ``quick`` preset."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.data import DataConfig
from ..config.loader import deep_merge, load_yaml
from ..data.interactions import Interactions
from ..presets import preset
from .cells import load_run_config

logger = logging.getLogger(__name__)


@dataclass
class Setup:
    """Where data and configs come from."""

    configs: Path = Path("configs")
    root: str | None = None
    quick: bool = False
    quiet: bool = False
    ddrm_epochs: int | None = None
    tuned: bool = False
    records: Path | None = None  # cell records (ddrm.experiments.records): read before running, written after
    device: str | None = None  # where the cells train and evaluate (None: as their configs say)
    finished_only: bool = False  # run no cell: assemble the outcome from the finished / recorded ones
    data_cache: dict[str, Interactions] = field(default_factory=dict)
    quick_settings: dict[str, Any] = field(default_factory=lambda: preset("quick"))

    def _tuned_path(self, dataset: str, name: str) -> Path:
        return self.configs / dataset / "tuned" / f"{name}.yaml"

    def has_tuned(self, dataset: str, name: str) -> bool:
        """Whether ``tuned`` runs take a tuned config for ``name`` on ``dataset``."""
        return self.tuned and not self.quick and self._tuned_path(dataset, name).is_file()

    def tuned_config(self, dataset: str, name: str) -> dict[str, Any] | None:
        """``configs/<dataset>/tuned/<name>.yaml`` (written by ``ddrm tune``) when ``tuned`` and it exists; a missing
        one is logged and the hand-set recipe is used (the table marks the row)."""
        if not self.has_tuned(dataset, name):
            if self.tuned and not self.quick:
                logger.warning("no tuned config %s: %s keeps its hand-set recipe", self._tuned_path(dataset, name), name)
            return None
        cfg = load_yaml(self._tuned_path(dataset, name))
        cfg.pop("output", None)
        cfg.pop("backend_checkpoint", None)
        return cfg

    def data_section(self, dataset: str, noise: float | None = None) -> dict[str, Any]:
        """The data section of ``dataset``'s cells: its name (and root), the dataset's own policy from
        ``configs/<dataset>/dataset.yaml`` (e.g. amazon-book's injected noise), and ``noise`` (a noise sweep's ratio,
        replacing the policy's) when given."""
        if self.quick:
            sec: dict[str, Any] = dict(self.quick_settings["data"])
        else:
            policy = self.configs / dataset / "dataset.yaml"
            sec = {**(load_yaml(policy).get("data", {}) if policy.is_file() else {}), "name": dataset}
            if self.root:
                sec["root"] = self.root
        if noise:
            sec["noise_ratio"], sec["noise_seed"] = noise, 0
        elif noise is not None:  # a sweep's clean point
            sec.pop("noise_ratio", None)
            sec.pop("noise_seed", None)
        return sec

    def data(self, section: dict[str, Any]) -> Interactions:
        key = json.dumps(section, sort_keys=True)
        if key not in self.data_cache:
            from ..config import build_config

            self.data_cache[key] = build_config(DataConfig, overrides=section).load(quiet=self.quiet)
        return self.data_cache[key]

    def tuned_backend(self, dataset: str, backend: str) -> dict[str, Any] | None:
        """The tuned config of ``backend`` as a backbone (None if absent, or if the file of that name is a
        baseline's, as ``ials.yaml`` from ``ddrm tune --model ials``)."""
        tuned = self.tuned_config(dataset, backend)
        return tuned if tuned is not None and "backend" in tuned else None

    def backend_config(self, dataset: str, backend: str, section: dict[str, Any]) -> dict[str, Any]:
        if self.quick:
            q = self.quick_settings
            return {"data": section, "backend": {"name": backend, "layers": q["layers"].get(backend, 0),
                                                 **q["backend"]}, "train": dict(q["train"])}
        tuned = self.tuned_backend(dataset, backend)
        return {**(tuned if tuned is not None else load_run_config(self.configs, dataset, backend)), "data": section}

    def ddrm_config(self, dataset: str, backend: str, section: dict[str, Any]) -> dict[str, Any]:
        if self.quick:
            cfg = {"data": section, "ddrm": dict(self.quick_settings["ddrm"]), "train": dict(self.quick_settings["train"])}
        else:
            tuned = self.tuned_config(dataset, f"ddrm-{backend}")
            cfg = {**(tuned if tuned is not None else load_run_config(self.configs, dataset, f"ddrm-{backend}")),
                   "data": section}
        if self.ddrm_epochs is not None:  # a coarser, quicker run: say so wherever the numbers are shown
            cfg = deep_merge(cfg, {"train": {"epochs": self.ddrm_epochs}})
        return cfg

    def baseline_params(self, dataset: str, name: str) -> dict[str, Any]:
        if self.quick:
            return dict(self.quick_settings["baselines"].get(name, {}))
        tuned = self.tuned_config(dataset, name)
        if tuned is not None:
            return dict(tuned.get(name, {}))
        path = self.configs / dataset / "baselines.yaml"
        return dict(load_yaml(path).get(name, {})) if path.is_file() else {}
