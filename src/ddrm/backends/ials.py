"""The ``ials`` backbone: the ``dim`` factors of implicit ALS (Hu, Koren and Volinsky, 2008), fitted by the
``implicit`` library (``ddrm.baselines.ials``), used as given embeddings."""

from __future__ import annotations

import torch

from ..config.backbones import IALSConfig
from ..data.interactions import Interactions
from .registry import Backbone


def initial(cfg: IALSConfig, data: Interactions, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """iALS factors of ``data.train`` (users [n_users, dim], items [n_items, dim]), seeded by ``seed``."""
    from ..baselines.ials import ials_factors

    user, item = ials_factors(data.train, cfg.dim, cfg.ials_reg, cfg.ials_alpha, cfg.ials_iterations, seed)
    return torch.from_numpy(user), torch.from_numpy(item)


BACKBONE = Backbone("ials", IALSConfig, initial=initial)  # type: ignore[arg-type]
