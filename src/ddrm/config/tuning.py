"""What ``ddrm tune`` is asked (``TuneOptions``); search spaces are YAML files (``ddrm/spaces/``)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

PRUNERS = ("median", "halving", "none")


@dataclass
class TuneOptions:
    """What ``ddrm tune`` was asked.

    model : a name from :func:`ddrm.tuning.objective.model_names`; trials : the study's total of finished trials
    timeout : stop starting trials after this many seconds; storage : Optuna storage URL or journal file path
    study : study name (default ``<model>-<dataset>``); space : a space file (default: the shipped one)
    output : folder for study.db, trials.csv, best.yaml, the plot and result.json (default runs/tune/<study>)
    pruner : median, halving or none; prune_after : no trial is pruned at an epoch below this (0: from its first
    validation; a higher value spares slow starters, e.g. a low learning rate); seed : the sampler's seed
    worker : this process's index among workers sharing a study (shifts the sampler's seed); final : refit the best trial and evaluate it on test
    stale_after : an RDB storage's trial whose worker sent no heartbeat for this many seconds (a killed process or
    machine) is marked failed and its parameters are tried once more
    include_config : also run the config's own values of the searched parameters as a trial (the next one; once per
    study), so that the tuned best never validates below the config it started from
    """

    model: str
    trials: int = 20
    timeout: float | None = None
    storage: str | None = None
    study: str | None = None
    space: str | None = None
    output: str | None = None
    pruner: str = "median"
    prune_after: int = 0
    seed: int = 0
    worker: int = 0
    final: bool = True
    stale_after: int = 600
    include_config: bool = False
    quiet: bool = False

    def validate(self) -> None:
        if self.trials < 1:
            raise ConfigError(f"--trials must be >= 1, got {self.trials}.")
        if self.timeout is not None and self.timeout <= 0:
            raise ConfigError(f"--timeout must be > 0 seconds, got {self.timeout}.")
        if self.pruner not in PRUNERS:
            raise ConfigError(f"--pruner must be one of {', '.join(PRUNERS)}, got {self.pruner!r}.")
        if self.prune_after < 0:
            raise ConfigError(f"--prune-after must be >= 0 epochs, got {self.prune_after}.")
        if self.worker < 0:
            raise ConfigError("--worker must be >= 0.")
        if self.stale_after < 2:
            raise ConfigError(f"--stale-after must be >= 2 seconds, got {self.stale_after}.")
