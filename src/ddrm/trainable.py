"""The hooks protocol of ddrm's one training loop (:func:`ddrm.training.train_loop`).

Every trained model (the embedding backends, DDRM's denoisers, DiffRec) is a :class:`TrainableModule`: an
``nn.Module`` with a ``loss`` on one batch of examples, a ``scorer`` for validation, and explicit hooks whose
defaults do nothing. The loop calls every hook unconditionally, so a model states what it does by overriding them,
and the loop never probes for optional methods.

Hooks, in the order the loop calls them:

- ``sampler(data)``, once: a callable ``rng -> tuple of equal-length int64 arrays``, the examples of one epoch
  (default: BPR triples ``(users, positives, negatives)``, one per training interaction); each step's batch is a
  slice of every array, split across ranks under torchrun.
- ``set_rank(rank)``, once under torchrun: a different random stream per rank.
- ``on_epoch_start(epoch, rng)``, every epoch before sampling (e.g. SGL draws its graph views from ``rng``).
- ``on_step(global_step)``, before every step (exact under resumption; e.g. T-CE's drop-rate schedule).
- ``loss(*batch) -> {"loss": ..., other terms}``; ``loss`` is minimised.
- ``scorer()``, after an epoch that validates.
- ``rng_state()`` / ``set_rng_state(state)``: the model's own generators, saved in resumable training states.
- ``has_unused_parameters``: whether some parameters get no gradient (DistributedDataParallel must be told).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.interactions import Interactions
from .data.sampling import interaction_keys, sample_triples

Sampler = Callable[[np.random.Generator], tuple[np.ndarray, ...]]


class TripleSampler:
    """BPR triples of an epoch: every training interaction once with one sampled negative (``sample_triples``)."""

    def __init__(self, data: Interactions) -> None:
        self.train = data.train
        self.keys = interaction_keys(data.train)

    def __call__(self, rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        return tuple(sample_triples(self.train, self.train.nnz, rng, self.keys))


class TrainableModule(nn.Module):
    """Base of every model the training loop trains; see the module docstring for the hooks and their order."""

    has_unused_parameters: bool = False

    def sampler(self, data: Interactions) -> Sampler:
        """The examples of one epoch (default: BPR triples)."""
        return TripleSampler(data)

    def loss(self, *batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms on one batch (one int64 tensor [B] per array of the sampler); key ``loss`` is minimised."""
        raise NotImplementedError

    def scorer(self) -> Any:
        """What validation evaluates: an object with ``score(users [B]) -> [B, n_items]``."""
        raise NotImplementedError

    def set_rank(self, rank: int) -> None:
        """Under torchrun: this process's rank (called once, before training)."""

    def on_epoch_start(self, epoch: int, rng: np.random.Generator) -> None:
        """Before each epoch's sampling, with the loop's epoch generator."""

    def on_step(self, step: int) -> None:
        """Before each step, with the global step index (0-based, across epochs)."""

    def rng_state(self) -> dict[str, torch.Tensor]:
        """The model's own random generators, for exact resumption (default: none)."""
        return {}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore what :meth:`rng_state` returned."""


class SeededModule(TrainableModule):
    """A trainable module that draws its training randomness (steps, noise, dropout) from one torch generator of its
    own, seeded with ``generator_seed``: the generator follows the module across devices, is saved in training
    states, and under torchrun rank r reseeds it with ``generator_seed + 7919 r`` (rank 0 keeps the seed's stream)."""

    def __init__(self, generator_seed: int) -> None:
        super().__init__()
        self.generator_seed = generator_seed
        self.generator = torch.Generator().manual_seed(generator_seed)

    def _apply(self, fn, recurse=True):
        out = super()._apply(fn, recurse)
        ref = next(self.buffers(), None)
        if ref is None:
            ref = next(self.parameters(), None)
        if ref is not None and self.generator.device != ref.device:
            self.generator = torch.Generator(device=ref.device).manual_seed(self.generator.initial_seed())
        return out

    def rng_state(self) -> dict[str, torch.Tensor]:
        return {"generator": self.generator.get_state()}

    def set_rng_state(self, state: dict[str, torch.Tensor]) -> None:
        self.generator.set_state(state["generator"])

    def set_rank(self, rank: int) -> None:
        if rank:
            self.generator.manual_seed(self.generator_seed + 7919 * rank)
