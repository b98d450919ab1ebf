"""Config sections shared by every command: data selection and evaluation protocol."""

from __future__ import annotations

from dataclasses import dataclass, field

from .data.interactions import Interactions
from .data.preprocess import inject_noise
from .data.readers import ReadOptions
from .data.registry import load_dataset
from .data.synthetic import SyntheticConfig
from .errors import ConfigError
from .evaluation import DEFAULT_KS, METRICS


@dataclass
class DataConfig:
    """Which data to use.

    name : a registered dataset (``ml-1m_noisy``, ...), ``synthetic``, or a path to a folder / file
    root : data root for registered names (default ``$DDRM_DATA`` or the user cache)
    noise_ratio : inject this ratio of random noisy interactions into train (0 = none)
    noise_seed : seed of that injection
    read : reader options (format, columns, validation carving, split of raw files)
    synthetic : generator settings for ``name: synthetic``
    """

    name: str = "synthetic"
    root: str | None = None
    noise_ratio: float = 0.0
    noise_seed: int = 0
    read: ReadOptions = field(default_factory=ReadOptions)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)

    def load(self, quiet: bool = False) -> Interactions:
        """Load (and, if asked, noise) the dataset."""
        named_default = self.read == ReadOptions()
        data = load_dataset(self.name, self.root, None if named_default else self.read, self.synthetic, quiet=quiet)
        if self.noise_ratio > 0:
            data = inject_noise(data, self.noise_ratio, self.noise_seed)
        return data


@dataclass
class EvalConfig:
    """Evaluation protocol: cut-offs, batch size, and the validation metric used for model selection."""

    ks: tuple[int, ...] = DEFAULT_KS
    batch_size: int | None = None
    metric: str = "recall@20"

    def validate(self) -> None:
        if not self.ks or min(self.ks) < 1:
            raise ConfigError(f"eval.ks must be positive integers, got {list(self.ks)}.")
        name, _, k = self.metric.partition("@")
        if name not in METRICS or not k.isdigit() or int(k) not in self.ks:
            raise ConfigError(f"eval.metric must be one of {', '.join(METRICS)} at a K in eval.ks, got {self.metric!r}.")
