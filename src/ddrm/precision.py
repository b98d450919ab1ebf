"""``bf16: auto``: use bfloat16 autocast only where a short probe on this machine shows it faster.

Whether bf16 pays depends on the hardware, not on the model: on a CPU with AMX tiles (Intel Sapphire Rapids and
later) bf16 matmuls run several times faster than fp32; on CPUs with only AVX512-BF16 (AMD Zen 4, older Xeons)
autocast's casts can make a step *slower*; on a GPU a DDRM step is bound by kernel launches and bf16 changes little.
So the probe times the real training step both ways, interleaved, and keeps fp32 unless bf16 is clearly faster.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import torch

from . import distributed

logger = logging.getLogger(__name__)

#: bf16 is chosen only when its probe step takes less than this fraction of the fp32 one (a clear gain, not noise).
MARGIN = 0.9


def _timed(step: Callable[[bool], None], bf16: bool, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    t0 = time.perf_counter()
    step(bf16)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0


def probe_bf16(step: Callable[[bool], None], device: torch.device | str = "cpu", reps: int = 5,
               warmup: int = 2) -> tuple[bool, dict[str, Any]]:
    """Time ``step(bf16)`` (one training step's forward and backward; it must leave no trace on training) with
    bf16 off and on, ``reps`` interleaved rounds after ``warmup``; the minimum of each is compared.

    Returns (use bf16, {"fp32_ms", "bf16_ms", "bf16": chosen}). Under torchrun every rank probes and bf16 is used only
    if all ranks find it faster, so they train alike.
    """
    device = torch.device(device)
    for _ in range(warmup):
        for bf16 in (False, True):
            step(bf16)
    times: dict[bool, list[float]] = {False: [], True: []}
    for _ in range(reps):
        for bf16 in (False, True):
            times[bf16].append(_timed(step, bf16, device))
    fp32, bf16 = min(times[False]), min(times[True])
    use = bf16 < MARGIN * fp32
    if distributed.active():
        use = distributed.all_sum([float(use)])[0] == distributed.world_size()
    info = {"fp32_ms": round(1e3 * fp32, 2), "bf16_ms": round(1e3 * bf16, 2), "bf16": use}
    logger.info("bf16: auto -> %s (probe step %.1f ms fp32, %.1f ms bf16)", "on" if use else "off",
                info["fp32_ms"], info["bf16_ms"])
    return use, info
