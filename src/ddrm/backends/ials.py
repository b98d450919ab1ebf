"""The ``ials`` backbone: the ``dim`` factors of implicit ALS (Hu, Koren and Volinsky, 2008), fitted by the
``implicit`` library (``ddrm.baselines.ials``), used as given embeddings."""

from __future__ import annotations

import numpy as np
import torch

from ..config.backbones import IALSConfig
from ..data.interactions import Interactions, history_matrix
from .base import EmbeddingBackend
from .registry import Backbone


def initial(cfg: IALSConfig, data: Interactions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """iALS factors of ``data.train`` (users [n_users, dim], items [n_items, dim]), seeded by ``seed``."""
    from ..baselines.ials import ials_factors

    user, item = ials_factors(data.train, cfg.dim, cfg.ials_reg, cfg.ials_alpha, cfg.ials_iterations, seed)
    return torch.from_numpy(user), torch.from_numpy(item)


class IALSModule(EmbeddingBackend):
    """The iALS factors as embeddings; a new user is folded in by iALS's own user step (the least-squares factor of
    their history against the item factors, ``ials_reg`` and ``ials_alpha``) rather than a history average."""

    cfg: IALSConfig

    def fold_in(self, histories: list[np.ndarray]) -> torch.Tensor:
        from ..baselines.ials import fold_in_factors

        items = self.embeddings()[1]
        x = history_matrix(histories, items.shape[0])
        return fold_in_factors(x, items.cpu(), self.cfg.ials_reg, self.cfg.ials_alpha).to(items.device)


BACKBONE = Backbone("ials", IALSConfig, module=IALSModule, initial=initial)  # type: ignore[arg-type]
