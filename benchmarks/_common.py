"""Helpers shared by the benchmark scripts (not part of the library)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import torch

from ddrm.machine import keep_freed_memory, machine_info

DEFAULT_ROOT = os.environ.get("DDRM_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))


def machine() -> dict:
    """``ddrm.machine.machine_info()`` plus whether freed memory is kept for reuse (as the CLI does)."""
    return {**machine_info(), "malloc_keep_freed": keep_freed_memory()}


def cuda_peak() -> dict:
    """Peak CUDA memory allocated by this process (empty without CUDA)."""
    return {"cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20} if torch.cuda.is_available() else {}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_isolated(script: str, args: list[str]) -> dict:
    """Run ``script args`` in a fresh interpreter (so peak RSS is its own) and parse its last JSON line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])
