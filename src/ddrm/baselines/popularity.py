"""MostPop: every user gets the items with the most training interactions."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ..data.interactions import Interactions
from ..recommender import Recommender


class MostPop(Recommender):
    """Scores each item by its number of training interactions (the same list for every user)."""

    name = "mostpop"

    def __init__(self) -> None:
        pass

    def fit(self, data: Interactions, on_validation: Callable[[int, float], None] | None = None) -> MostPop:
        self.seen_ = data.train
        self.popularity_ = torch.from_numpy(np.asarray(data.train.sum(axis=0), dtype=np.float32).ravel())
        return self

    def score(self, users: torch.Tensor) -> torch.Tensor:
        self._check_fitted()
        return self.popularity_.unsqueeze(0).expand(users.shape[0], -1)

    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [len(histories), n_items] for users given by their items (the same list for everyone)."""
        self._check_fitted()
        return self.popularity_.unsqueeze(0).expand(len(histories), -1)

    def fitted_state(self) -> dict[str, torch.Tensor]:
        return {"popularity": self.popularity_}

    def restore(self, state: dict[str, torch.Tensor], data: Interactions, device: str = "cpu") -> None:
        self.popularity_, self.seen_ = state["popularity"], data.train
