"""What the trained user-row models (DiffRec, Mult-VAE) share: a user is their binary row of training interactions
x [n_items], the network maps rows to scores, and nothing else of the user is learned.

So training is ddrm's one training loop over shuffled batches of the users that have training items (each row
densified per batch only: memory is bounded by the batch), and a user the model never saw is scored from their
history alone (``score_history``: fold-in, no refit), the same way as a known one.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np
import torch

from ..data.interactions import Interactions, history_matrix
from ..errors import ConfigError
from ..recommender import Recommender
from ..trainable import Sampler, SeededModule


class RowModule(SeededModule):
    """The trainable side of a :class:`RowRecommender`: an epoch is every user with training items once, in a random
    order; validation scores through the owner. Its generator (the owner's seed + 1) draws the model's training
    randomness (diffusion steps, noise, dropout masks)."""

    def __init__(self, owner: RowRecommender) -> None:
        super().__init__(owner.seed + 1)
        self.owner = [owner]  # not a child module

    def rows(self, users: torch.Tensor) -> torch.Tensor:
        """The users' binary training rows [B, n_items], float32 on the model's device."""
        return self.owner[0].rows(users.cpu().numpy())

    def sampler(self, data: Interactions) -> Sampler:
        users = np.flatnonzero(np.diff(data.train.indptr) > 0)
        return lambda rng: (rng.permutation(users),)

    def scorer(self) -> RowRecommender:
        return self.owner[0]


class RowRecommender(Recommender):
    """Base of the trained user-row models. A subclass builds its :class:`RowModule` (``_module``) and scores a batch
    of rows (``_score_rows``); it has the hyper-parameters ``lr``, ``weight_decay``, ``batch_size``, ``epochs``,
    ``eval_every``, ``patience``, ``seed``, ``quiet``, ``max_items`` and ``device``."""

    label = "model"  # the name in messages and progress bars
    lr: float
    weight_decay: float
    batch_size: int
    epochs: int
    eval_every: int
    patience: int
    seed: int
    quiet: bool
    max_items: int
    device: str

    def _module(self, data: Interactions) -> RowModule:
        """A fresh (untrained) module for ``data``, on the CPU."""
        raise NotImplementedError

    def _score_rows(self, x: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of binary rows ``x`` [B, n_items]; ``keys`` [B] (user index, or a history's hash)
        key any noise, so that a row's scores do not depend on its batch."""
        raise NotImplementedError

    def _check_params(self, data: Interactions) -> None:
        """Refuse hyper-parameters that cannot work on ``data`` (one sentence): the training settings' ranges, and
        the catalogue size against ``max_items`` (the network is dense in n_items)."""
        if (self.epochs < 0 or self.batch_size < 1 or self.lr <= 0 or self.weight_decay < 0 or self.eval_every < 1
                or self.patience < 1):
            raise ConfigError(f"{self.label} needs epochs >= 0, batch_size >= 1, lr > 0, weight_decay >= 0, "
                              f"eval_every >= 1 and patience >= 1.")
        if data.n_items > self.max_items:
            raise ConfigError(f"{self.label}'s network is dense in n_items ({data.n_items} > max_items="
                              f"{self.max_items}).")

    def rows(self, users: np.ndarray) -> torch.Tensor:
        """Binary training rows [B, n_items] of ``users`` [B], float32 on the fitted device."""
        return torch.from_numpy((self.seen_[users] > 0).toarray().astype(np.float32)).to(self.device_)

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None,
            state_path: str | os.PathLike[str] | None = None) -> RowRecommender:
        """Train with Adam on shuffled user batches in ddrm's training loop (validation every ``eval_every`` epochs
        on recall@20, early stopping, the best state kept; NaN checks, and with ``state_path`` resumable and
        stopped cleanly by SIGINT / SIGTERM).

        ``on_validation(epoch, recall@20)`` is called after every validation but the last (the tuner's pruning hook)."""
        from ..config.training import EvalConfig, TrainConfig
        from ..training import resolve_device, train_loop

        self._check_params(data)
        self.device_ = resolve_device(self.device)
        self.seen_ = data.train
        self.module_ = self._module(data).to(self.device_)
        train = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, weight_decay=self.weight_decay,
                            eval_every=self.eval_every, patience=self.patience, device=str(self.device_))
        self.result_ = train_loop(self.module_, data, train, EvalConfig(ks=(20,), metric="recall@20"), self.seed,
                                  self.quiet, desc=self.name, device=self.device_, on_validation=on_validation,
                                  state_path=state_path)
        self.module_.train(False)
        self.history_ = self.result_.history
        self.best_valid_ = self.result_.best_score
        return self

    def fitted_state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.module_.state_dict().items()}

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        from ..training import TrainResult, resolve_device

        self.device_ = resolve_device(device)
        self.seen_ = data.train
        module = self._module(data)
        try:
            module.load_state_dict(state)
        except RuntimeError as exc:
            raise ConfigError(f"saved {self.label} weights do not fit its parameters and the data "
                              f"({str(exc).splitlines()[0]}).") from None
        self.module_ = module.to(self.device_).train(False)
        self.result_ = TrainResult()

    @torch.no_grad()
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of ``users`` [B] from their training rows."""
        self._check_fitted()
        return self._score_rows(self.rows(users.cpu().numpy()), users.to(self.device_))

    @torch.no_grad()
    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [len(histories), n_items] for users given by their item indices (fold-in: no refit)."""
        from ..diffusion import history_keys

        self._check_fitted()
        x = torch.from_numpy(history_matrix(histories, self.seen_.shape[1]).toarray()).to(self.device_)
        return self._score_rows(x, history_keys(histories, self.device_))
