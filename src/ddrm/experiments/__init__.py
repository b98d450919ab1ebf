"""Experiment commands: the comparison table, the noise sweep and the ablation (cells that resume when re-run)."""

from .setup import Setup
from .specs import METHODS, ablation, noise, table

__all__ = ["METHODS", "Setup", "table", "noise", "ablation"]
