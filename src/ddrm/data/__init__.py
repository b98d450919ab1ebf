"""Data layer: the Interactions contract, readers, preprocessing, synthetic data, named datasets."""

from .interactions import SPLITS, Interactions
from .memory import from_frame, from_matrix
from .preprocess import SplitOptions, carve_validation, inject_noise
from .readers import FORMATS, ReadOptions, detect_format, read_dataset
from .registry import REGISTRY, default_data_root, fetch, load_dataset
from .sampling import sample_negatives, sample_triples
from .synthetic import SyntheticConfig, make_synthetic
from .writer import save_dataset

__all__ = [
    "SPLITS", "Interactions", "from_frame", "from_matrix", "SplitOptions", "carve_validation", "inject_noise", "FORMATS", "ReadOptions",
    "detect_format", "read_dataset", "REGISTRY", "default_data_root", "fetch", "load_dataset", "sample_negatives",
    "sample_triples", "SyntheticConfig", "make_synthetic", "save_dataset",
]
