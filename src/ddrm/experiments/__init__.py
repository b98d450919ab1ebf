"""Experiment commands: the comparison table, the noise sweep and the ablation (cells that resume when re-run)."""

from .specs import METHODS, Setup, ablation, noise, table

__all__ = ["METHODS", "Setup", "table", "noise", "ablation"]
