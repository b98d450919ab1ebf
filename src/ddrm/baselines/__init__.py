"""Strong simple baselines (and the trained user-row models DiffRec and Mult-VAE) with the common ``fit`` / ``score``
interface."""

from __future__ import annotations

import inspect
import os
from typing import Any

from ..data.interactions import Interactions
from ..recommender import Recommender, build_from_registry
from .diffrec import DiffRec
from .ease import EASE
from .ials import IALS
from .multvae import MultVAE
from .neighbours import ItemKNN, RP3beta
from .popularity import MostPop

BASELINES: dict[str, type[Recommender]] = {"mostpop": MostPop, "itemknn": ItemKNN, "ease": EASE, "rp3beta": RP3beta,
                                           "ials": IALS, "diffrec": DiffRec, "multvae": MultVAE}


def parameters(name: str) -> list[str]:
    """The hyper-parameters baseline ``name`` takes (its ``__init__`` arguments); ``[]`` for an unknown name."""
    cls = BASELINES.get(name.lower())
    return [p for p in inspect.signature(cls.__init__).parameters if p != "self"] if cls else []


def run_settings(name: str, seed: int | None = None, device: str | None = None,
                 quiet: bool = False) -> dict[str, Any]:
    """The run-wide settings of a command (``--seed``, ``--device``, ``--quiet``) that baseline ``name`` takes as
    parameters, to lay over its config: ``seed`` and ``device`` when given, ``quiet: True`` when asked (without it,
    the config decides). A setting the baseline has no parameter for is left out (EASE has no seed, MostPop no device),
    so every command (``ddrm baseline``, ``ddrm tune``, the experiment cells) treats a baseline the same way."""
    accepted = parameters(name)
    given = {"seed": seed, "device": device, "quiet": True if quiet else None}
    return {k: v for k, v in given.items() if v is not None and k in accepted}


def build(name: str, **params: Any) -> Recommender:
    """A baseline by name (``mostpop``, ``itemknn``, ``ease``, ``rp3beta``, ``ials``, ``diffrec``,
    ``multvae``) with its hyper-parameters."""
    return build_from_registry(BASELINES, name, "baseline", params)


def load(path: str | os.PathLike[str], data: Interactions, device: str = "cpu") -> Recommender:
    """The fitted baseline saved by ``Recommender.save`` (``ddrm baseline --output``), checked against ``data``."""
    from ..checkpoint import check_data, load_checkpoint

    payload = load_checkpoint(path, "baseline")
    check_data(payload, data, path)
    model = build(payload["name"], **payload["params"])
    model.restore(payload["state"], data, device)
    model.checkpoint_ = payload
    return model


__all__ = ["BASELINES", "build", "load", "parameters", "run_settings", "DiffRec", "EASE", "IALS", "ItemKNN", "MostPop", "MultVAE",
           "RP3beta"]
