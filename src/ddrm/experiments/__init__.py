"""Experiment commands: the comparison table, the noise sweep and the ablation (cells that resume when re-run)."""

from .specs import Setup, ablation, noise, table

__all__ = ["Setup", "table", "noise", "ablation"]
