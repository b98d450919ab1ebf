"""The process and what it runs on: memory tuning applied by the command-line entry point (never on import of the
library), and what results record of where and from which code they came."""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import platform
import subprocess
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold_bytes: int = 1 << 30) -> bool:
    """Ask glibc to keep freed blocks up to ``threshold_bytes`` for reuse instead of returning them to the OS.

    Training allocates and frees the same multi-megabyte activations every step; by default glibc serves each from
    fresh ``mmap`` pages, and the page faults on first touch cost about a tenth of a DDRM epoch on CPU. Peak memory
    is unchanged (the blocks are reused); the process simply does not shrink between steps. Skipped when the user
    set ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` or on a C library without ``mallopt``. Returns
    whether the setting was applied.
    """
    if not sys.platform.startswith("linux") or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_",
                                                                               "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        ok = libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes) == 1
        ok = libc.mallopt(_M_TRIM_THRESHOLD, 2 * threshold_bytes) == 1 and ok
    except (OSError, AttributeError):
        return False
    logger.debug("glibc mallopt applied: %s", ok)
    return ok


def machine_info() -> dict:
    """The machine results were measured on: CPU model, logical CPUs, torch threads, RAM (GB), torch build, GPU."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        ram = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30)
    except (ValueError, OSError, AttributeError):
        ram = None
    return {"cpu": cpu, "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(), "ram_gb": ram,
            "torch": torch.__version__, "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def where_run(device: str = "cpu") -> str:
    """What a run ran on, for results gathered from several machines: the CPU's model, and the GPU's when ``device``
    is a CUDA one."""
    m = machine_info()
    return f"{m['cpu']}, {m['cuda']}" if str(device).startswith("cuda") and m["cuda"] else str(m["cpu"])


@functools.cache
def code_version() -> str:
    """The ddrm code a result came from, recorded with tuning trials and experiment cells: the package version, and
    when the package runs from its git checkout the commit (``0.1.0+880b920c1d2e``), marked ``.dirty`` when the
    package's own files differ from it (uncommitted changes elsewhere in the checkout, such as docs or results, do
    not count). Installed from a wheel or without git: the version alone. Read once per process (cached): the
    commands that record it (``ddrm tune``, ``ddrm experiment``) read it when they start, so that a commit made in
    the checkout while they run is not taken for the code they loaded."""
    from . import __version__

    return describe_code(Path(__file__).resolve().parent, __version__)


def describe_code(package: Path, version: str) -> str:
    """``version``, plus ``+COMMIT[.dirty]`` when ``package`` is ``src/ddrm`` of a git checkout (see
    :func:`code_version`)."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=package, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    top = git("rev-parse", "--show-toplevel")
    if not top or Path(top).resolve() / "src" / "ddrm" != package.resolve():  # e.g. a venv inside a user's repo
        return version
    commit = git("rev-parse", "--short=12", "HEAD")
    if not commit:
        return version
    changed = git("status", "--porcelain", "--untracked-files=no", "--", str(package))
    return f"{version}+{commit}" + (".dirty" if changed else "")
