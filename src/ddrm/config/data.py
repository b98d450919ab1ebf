"""Data settings: which dataset (``DataConfig``), how files are read (``ReadOptions``), how one raw table is split
(``SplitOptions``) and the built-in synthetic generator (``SyntheticConfig``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..data.interactions import Interactions

SplitMethod = Literal["auto", "chrono", "chrono-user", "random"]
SplitMode = Literal["all", "clean", "noisy"]


@dataclass
class SplitOptions:
    """How a single table of raw interactions becomes train / valid / test.

    method : ``chrono`` (one global time cut, DiffRec), ``chrono-user`` (per-user time cut), ``random`` or ``auto``
        (chrono when timestamps exist, else random)
    ratios : train / valid / test fractions, summing to 1
    mode : ``all`` keeps everything; ``clean`` keeps only rating >= threshold everywhere; ``noisy`` keeps low ratings
        in train and valid (natural noise) but tests on clean interactions only
    threshold : rating threshold for ``clean`` / ``noisy``
    drop_cold : drop valid/test interactions whose user or item never occurs in train
    """

    method: SplitMethod = "auto"
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    mode: SplitMode = "all"
    threshold: float = 4.0
    drop_cold: bool = True
    seed: int = 0

    def validate(self) -> None:
        if self.method not in ("auto", "chrono", "chrono-user", "random"):
            raise ConfigError(f"unknown split method {self.method!r}; use auto, chrono, chrono-user or random.")
        if self.mode not in ("all", "clean", "noisy"):
            raise ConfigError(f"unknown split mode {self.mode!r}; use all, clean or noisy.")
        r = np.asarray(self.ratios, dtype=float)
        if r.shape != (3,) or (r < 0).any() or r[0] <= 0 or abs(r.sum() - 1.0) > 1e-6:
            raise ConfigError(f"split ratios must be three non-negative fractions summing to 1, got {list(self.ratios)}.")


@dataclass
class ReadOptions:
    """Options of the readers (all optional; the format is detected when ``format`` is None)."""

    format: str | None = None
    sep: str | None = None
    user_col: str = "user_id"
    item_col: str = "item_id"
    rating_col: str = "rating"
    timestamp_col: str = "timestamp"
    valid_ratio: float = 0.1
    seed: int = 0
    split: SplitOptions = field(default_factory=SplitOptions)


@dataclass
class SyntheticConfig:
    """Size and shape of the synthetic dataset.

    Users and items get latent vectors of size ``dim``; a user's clean interactions are drawn without replacement
    with probability proportional to ``exp(temperature * <u, v> / sqrt(dim) + popularity bias)``, split per user
    into train / valid / test by ``ratios``. Then ``noise_ratio * nnz(train)`` uniformly random pairs are planted
    into train with label ``noise = 1`` so denoising can be measured against ground truth.
    """

    n_users: int = 1000
    n_items: int = 600
    dim: int = 8
    mean_items: float = 40.0
    temperature: float = 4.0
    popularity: float = 1.0
    noise_ratio: float = 0.2
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0

    def validate(self) -> None:
        if self.n_users < 2 or self.n_items < 10 or self.dim < 1:
            raise ConfigError("synthetic data needs n_users >= 2, n_items >= 10 and dim >= 1.")
        if not 3 <= self.mean_items <= self.n_items / 2:
            raise ConfigError(f"synthetic mean_items must be in [3, n_items / 2], got {self.mean_items}.")
        r = np.asarray(self.ratios, dtype=float)
        if r.shape != (3,) or (r <= 0).any() or abs(r.sum() - 1) > 1e-6:
            raise ConfigError(f"synthetic ratios must be three positive fractions summing to 1, got {self.ratios}.")


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
        from ..data.preprocess import inject_noise
        from ..data.registry import load_dataset

        named_default = self.read == ReadOptions()
        data = load_dataset(self.name, self.root, None if named_default else self.read, self.synthetic, quiet=quiet)
        if self.noise_ratio > 0:
            data = inject_noise(data, self.noise_ratio, self.noise_seed)
        return data
