"""Wall-clock and CPU seconds of a run that may continue the parts an interrupted run did before it.

CPU seconds are the process's CPU time over all its threads: the work done, whatever share of a busy machine the
run got (its wall-clock seconds also count the waiting). A part recorded before CPU seconds were counted leaves
them unknown (None) rather than counting only the parts after it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

Parts = tuple[float, float | None]  # (seconds, cpu_seconds) run before; cpu None: not counted then


def saved_parts(saved: Mapping[str, Any] | None) -> Parts:
    """The ``(seconds, cpu_seconds)`` a record of earlier parts holds (a training result, a cell marker); (0, 0)
    without a record, cpu_seconds None when the record has none."""
    if saved is None:
        return 0.0, 0.0
    cpu = saved.get("cpu_seconds")
    return float(saved.get("seconds", 0.0)), float(cpu) if cpu is not None else None


class Stopwatch:
    """Started on creation; ``before`` is what earlier parts of the same run took."""

    def __init__(self, before: Parts = (0.0, 0.0)) -> None:
        self.before = before
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()

    @property
    def seconds(self) -> float:
        return self.before[0] + time.perf_counter() - self._wall0

    @property
    def cpu_seconds(self) -> float | None:
        return None if self.before[1] is None else self.before[1] + time.process_time() - self._cpu0

    def record(self, seconds: str = "seconds", cpu_seconds: str = "cpu_seconds") -> dict[str, float]:
        """``{seconds: ..., cpu_seconds: ...}`` under the given keys, the CPU entry left out when unknown."""
        cpu = self.cpu_seconds
        return {seconds: self.seconds, **({cpu_seconds: cpu} if cpu is not None else {})}
