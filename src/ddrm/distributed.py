"""torch.distributed glue for ``torchrun``: process group from the environment, sharding, reductions.

Under ``torchrun --nproc_per_node=N -m ddrm train ...`` every process runs the same command. Training shards each
epoch's (seeded, identical on every rank) triples: step k's global batch of ``batch_size`` triples is split across
ranks, the trainable module is wrapped in DistributedDataParallel (gradients averaged, so one step equals a
single-process step on the global batch up to float rounding), evaluation users are sharded and the metric sums
all-reduced, and only rank 0 writes files or prints. Collectives go through ``gloo`` for CPU tensors and ``nccl``
for CUDA tensors (one process group with both, so a ``--device cpu`` run on a GPU machine never touches NCCL).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

import numpy as np
import torch
import torch.distributed as dist

from .errors import ConfigError

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
    """Initialise the default process group from torchrun's environment; a no-op for a single process.

    With CUDA and NCCL present the group has both backends (``cpu:gloo,cuda:nccl``): each collective runs on the
    backend of its tensors' device, so CPU training on a GPU machine and GPU training both work. Returns whether a
    group is active."""
    if not launched() or active():
        return active()
    backend = "gloo"
    if torch.cuda.is_available() and dist.is_nccl_available():
        backend = "cpu:gloo,cuda:nccl"
        if local_rank() < torch.cuda.device_count():
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
    """Each rank on its own GPU (``cuda`` -> ``cuda:LOCAL_RANK``); CPU unchanged. More GPU ranks on a node than
    visible GPUs is a :class:`~ddrm.errors.ConfigError` (NCCL cannot put two ranks on one GPU)."""
    if device.type == "cuda" and active() and device.index is None:
        if local_rank() >= torch.cuda.device_count():
            raise ConfigError(f"torchrun started process {local_rank()} on this node but only "
                              f"{torch.cuda.device_count()} GPU(s) are visible; use --nproc_per_node="
                              f"{torch.cuda.device_count()} or --device cpu.")
        return torch.device("cuda", local_rank())
    return device


def shard(values: np.ndarray) -> np.ndarray:
    """This rank's strided share of ``values`` (all of it for a single process)."""
    return values[rank()::world_size()] if active() else values


def all_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sum over ranks (float64, through the CPU backend: a few numbers)."""
    if not active():
        return list(values)
    t = torch.tensor(list(values), dtype=torch.float64)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    """Wait for every rank (a CPU all-reduce, so it never needs a GPU backend)."""
    all_sum([0.0])
