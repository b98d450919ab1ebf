"""torch.distributed glue for ``torchrun``: process group from the environment, sharding, reductions.

Under ``torchrun --nproc_per_node=N -m ddrm train ...`` every process runs the same command. Training shards each
epoch's (seeded, identical on every rank) triples: step k's global batch of ``batch_size`` triples is split across
ranks, the trainable module is wrapped in DistributedDataParallel (gradients averaged, so one step equals a
single-process step on the global batch up to float rounding), evaluation users are sharded and the metric sums
all-reduced, and only rank 0 writes files or prints. ``gloo`` on CPU, ``nccl`` on GPU.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)


def launched() -> bool:
    """True when started by torchrun (or another launcher) with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> bool:
    """Initialise the default process group from torchrun's environment (``nccl`` if CUDA is present, else
    ``gloo``); a no-op for a single process. Returns whether a group is active."""
    if not launched() or active():
        return active()
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend)
    logger.info("distributed: rank %d of %d (%s)", rank(), world_size(), backend)
    return True


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def device_for_rank(device: torch.device) -> torch.device:
    """Each rank on its own GPU (``cuda`` -> ``cuda:LOCAL_RANK``); CPU unchanged."""
    if device.type == "cuda" and active() and device.index is None:
        return torch.device("cuda", local_rank())
    return device


def shard(values: np.ndarray) -> np.ndarray:
    """This rank's strided share of ``values`` (all of it for a single process)."""
    return values[rank()::world_size()] if active() else values


def all_sum(values: Sequence[float], device: torch.device | str = "cpu") -> list[float]:
    """Element-wise sum over ranks (float64)."""
    if not active():
        return list(values)
    backend_device = torch.device("cuda", local_rank()) if dist.get_backend() == "nccl" else torch.device("cpu")
    t = torch.tensor(list(values), dtype=torch.float64, device=backend_device)
    dist.all_reduce(t)
    return t.cpu().tolist()


def barrier() -> None:
    if active():
        dist.barrier()
