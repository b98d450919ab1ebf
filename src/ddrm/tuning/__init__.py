"""Hyper-parameter tuning on Optuna: search spaces, one trial's fit on validation, and the resumable study."""

from .objective import model_names, resolve_model
from .space import SearchSpace, load_space, shipped_spaces
from .study import TuneOptions, tune

__all__ = ["SearchSpace", "TuneOptions", "load_space", "model_names", "resolve_model", "shipped_spaces", "tune"]
