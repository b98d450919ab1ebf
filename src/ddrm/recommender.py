"""The interface every model shares: ``fit(data) -> self``, ``score(users)``, ``recommend(users, k)``."""

from __future__ import annotations

import inspect
import os
import typing
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from .data.interactions import Interactions
from .errors import ConfigError, NoFoldIn
from .evaluation import rows_to_mask, topk_from_scores


class Recommender:
    """Base class: subclasses implement ``fit`` and ``score``; hyper-parameters are ``__init__`` arguments.

    Fitted state ends in ``_`` (scikit-learn convention); ``__init__`` stores hyper-parameters and does no work.
    """

    name = "recommender"
    seen_: Any = None  # after fit: the [n_users, n_items] CSR of training interactions (masked by recommend)

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> Recommender:
        """Fit on ``data.train``. A trained model calls ``on_validation(epoch, score)`` after each of its
        validations but the one that ends its training (the tuner's pruning hook); a closed-form model has none and never calls it."""
        raise NotImplementedError

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] for int64 user indices [B]."""
        raise NotImplementedError

    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [len(histories), n_items] for users not in training, each given by an array of item indices
        (fold-in: no refit). A model that cannot do this keeps this default, which raises :class:`NoFoldIn`."""
        raise NoFoldIn(f"{type(self).__name__} cannot score a user it was not fitted on from an item history "
                       f"(no fold-in); ask for a known user instead.")

    def params(self) -> dict[str, Any]:
        """The hyper-parameters given to ``__init__``."""
        return {k: getattr(self, k) for k in inspect.signature(type(self).__init__).parameters if k != "self"}

    def fitted_state(self) -> dict[str, torch.Tensor]:
        """What ``fit`` learned, as named tensors (what :meth:`save` writes); a model that can be saved says so."""
        raise NotImplementedError(f"{type(self).__name__} cannot be saved.")

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        """Become the fitted model whose :meth:`fitted_state` was ``state``, on ``data`` (its training rows are
        what ``recommend`` masks); ``ddrm.baselines.load`` has checked that ``data`` has the shape it was fitted on."""
        raise NotImplementedError(f"{type(self).__name__} cannot be loaded.")

    def save(self, path: str | os.PathLike[str], data: Interactions, run_config: dict[str, Any] | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        """An atomic ``.pt`` checkpoint of kind ``baseline``: the model's name, hyper-parameters, fitted state and
        the data it was fitted on; ``ddrm.baselines.load`` (and every command that takes ``--checkpoint``) reads it."""
        from .checkpoint import data_info, save_checkpoint

        self._check_fitted()
        save_checkpoint(path, {"kind": "baseline", "name": self.name, "params": self.params(),
                               "config": run_config or {}, "data": data_info(data), "state": self.fitted_state(),
                               "metrics": metrics or {}})

    def _check_fitted(self) -> None:
        if self.seen_ is None:
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit(data) first.")

    def recommend(self, users: torch.Tensor | np.ndarray, k: int = 20, filter_seen: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k items per user: (items int64 [B, k], scores float [B, k]); training items excluded by default."""
        self._check_fitted()
        users_t = torch.as_tensor(np.asarray(users), dtype=torch.long)
        scores = self.score(users_t).float()
        if filter_seen:
            scores = scores.masked_fill(rows_to_mask(self.seen_, users_t.numpy(), scores.shape[1], scores.device),
                                        -torch.inf)
        top = topk_from_scores(scores, None, k)
        return top, torch.gather(scores, 1, top)


def build_from_registry(registry: dict[str, type], name: str, kind: str, params: dict[str, Any]) -> Any:
    """Instantiate ``registry[name](**params)`` with a clear error for unknown names or parameters."""
    key = name.lower()
    if key not in registry:
        raise ConfigError(f"unknown {kind} {name!r}; choose one of {', '.join(sorted(registry))}.")
    cls = registry[key]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for {kind} {key}; allowed: {', '.join(allowed)}.")
    from .config.loader import coerce

    hints = typing.get_type_hints(cls.__init__)  # every value checked against its type: one sentence, no traceback
    params = {k: coerce(v, hints[k], f"{key}.{k}") if k in hints else v for k, v in params.items()}
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid parameters for {kind} {key}: {exc}.") from None
