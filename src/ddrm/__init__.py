"""ddrm: the Denoising Diffusion Recommender Model (SIGIR 2024) as a library and command-line tool."""

from __future__ import annotations

__version__ = "0.1.0"

from . import backends, baselines  # noqa: E402
from .data import Interactions, from_frame, from_matrix, load_dataset, read_dataset  # noqa: E402
from .evaluation import EvalResult, evaluate  # noqa: E402
from .model import DDRM, DDRMConfig  # noqa: E402

__all__ = ["__version__", "backends", "baselines", "DDRM", "DDRMConfig", "Interactions", "from_frame", "from_matrix",
           "load_dataset", "read_dataset", "EvalResult", "evaluate"]
