"""Backends: MF, LightGCN, SGL trained with BPR, imported embeddings, EASE or iALS factors; one interface for all.

Each backbone lives in its own file with its own config (``mf``, ``lightgcn``, ``sgl``, ``imported``,
``ease_factors``, ``ials``); ``registry`` names them; :class:`Backend` fits, scores and saves any of them."""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from ..checkpoint import check_data, data_info, load_checkpoint, save_checkpoint
from ..config.backbones import (
    BackendConfig,
    EaseFactorsConfig,
    IALSConfig,
    ImportConfig,
    LightGCNConfig,
    MFConfig,
    SGLConfig,
    as_backbone_config,
)
from ..config.loader import from_dict, to_dict
from ..config.training import EvalConfig, TrainConfig
from ..data.interactions import Interactions
from ..errors import ConfigError
from ..recommender import Recommender
from ..training import TrainResult, resolve_device, train_loop
from .base import EmbeddingBackend
from .graph import normalized_adjacency, propagate
from .imported import load_embeddings
from .registry import Backbone, backbone, backbones
from .sgl import SGLModule

logger = logging.getLogger(__name__)
DEFAULT_LAYERS: dict[str, int] = {name: int(b.config().layers) for name, b in backbones().items()}


class Backend(Recommender):
    """A fitted embedding model: ``user_embeddings()``, ``item_embeddings()``, ``score(users)``, ``loss(...)``.

    Parameters
    ----------
    config : architecture (a backbone's config, e.g. ``LightGCNConfig``; a plain ``BackendConfig(name=...)`` becomes
        its backbone's class); train : optimisation (``TrainConfig``); eval : validation protocol
    seed : seeds initialisation and sampling; quiet : no progress bars
    """

    def __init__(self, config: BackendConfig | None = None, train: TrainConfig | None = None,
                 eval: EvalConfig | None = None, seed: int = 0, quiet: bool = False) -> None:
        self.config = as_backbone_config(config or LightGCNConfig())
        self.train = train or TrainConfig()
        self.eval = eval or EvalConfig()
        self.seed = seed
        self.quiet = quiet

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.config.name

    @property
    def backbone(self) -> Backbone:
        """The backbone's registry entry (config class, module class, how given embeddings are made)."""
        return backbone(self.config.name)

    def _build(self, data: Interactions) -> EmbeddingBackend:
        """The backbone's module: randomly initialised, or holding the given embeddings (``import``,
        ``ease-factors``, ``ials``; ``dim`` follows them)."""
        spec = self.backbone
        g = torch.Generator().manual_seed(self.seed)
        if spec.initial is None:
            return spec.module(data.train, self.config, g)
        user, item = spec.initial(self.config, data, self.seed)
        if user.shape[1] != self.config.dim:
            self.config = dataclasses.replace(self.config, dim=int(user.shape[1]))
        module = spec.module(data.train, self.config, g)
        with torch.no_grad():
            module.user.copy_(user)
            module.item.copy_(item)
        return module

    def fit(self, data: Interactions, state_path: str | os.PathLike[str] | None = None,
            on_validation: Callable[[int, float], None] | None = None) -> Backend:
        """Build the module and train it with BPR (``import`` and ``ease-factors`` start from their embeddings and
        are fine-tuned only if ``train.epochs > 0``).

        ``state_path``: resumable training state, written every epoch and on SIGINT/SIGTERM (see ``train_loop``);
        ``on_validation(epoch, score)``: called after every validation after which training goes on (see ``train_loop``).
        """
        device = resolve_device(self.train.device)
        self.module_ = self._build(data).to(device)
        self.device_ = device
        self.seen_ = data.train
        epochs = self.train.epochs
        if self.backbone.given and epochs:
            logger.info("fine-tuning %s embeddings for up to %d epochs", self.config.name, epochs)
        self.result_: TrainResult = train_loop(self.module_, data, self.train, self.eval, self.seed, self.quiet,
                                               desc=self.config.name, device=device,
                                               state_path=state_path, on_validation=on_validation)
        self.module_.train(False)
        if self.config.infer_layers_choices:
            self._select_depth(data)
        return self

    def _select_depth(self, data: Interactions) -> None:
        """Set ``infer_layers`` to the choice with the best validation ``eval.metric`` (the first one on ties);
        ``self.depth_scores_`` keeps ``{depth: validation metric}``."""
        from ..evaluation import select_on_validation

        def use(depth: int) -> None:
            self.config = dataclasses.replace(self.config, infer_layers=depth)
            self.module_.cfg = self.config  # the embeddings' cache notices the new depth

        best, self.depth_scores_ = select_on_validation(self, data, self.config.infer_layers_choices, use,
                                                        self.eval.ks, self.eval.metric, self.eval.batch_size,
                                                        self.device_)
        logger.info("propagation depth at inference: %d (validation %s %s)", best, self.eval.metric,
                    ", ".join(f"{k}: {v:.4f}" for k, v in self.depth_scores_.items()))

    def user_embeddings(self) -> torch.Tensor:
        """Final (propagated) user embeddings [n_users, d], computed once, no grad."""
        self._check_fitted()
        return self.module_.embeddings()[0]

    def item_embeddings(self) -> torch.Tensor:
        """Final (propagated) item embeddings [n_items, d], computed once, no grad."""
        self._check_fitted()
        return self.module_.embeddings()[1]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] = user_embeddings()[users] @ item_embeddings().T."""
        self._check_fitted()
        return self.module_.score(users)

    @torch.no_grad()
    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [B, n_items] for users not in training, each given by item indices: the backbone's fold-in user
        embedding (the history average of the (propagated) item embeddings; iALS: its user step) times the items."""
        self._check_fitted()
        return self.module_.fold_in(histories) @ self.item_embeddings().T

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training loss terms on int64 triples [B] (key ``loss``)."""
        return self.module_.loss(users, pos, neg)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike[str], data: Interactions, run_config: dict[str, Any] | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        """Atomic ``.pt`` with config, data fingerprint, ego weights and the training summary."""
        self._check_fitted()
        save_checkpoint(path, {
            "kind": "backend", "backend": to_dict(self.config), "train": to_dict(self.train), "seed": self.seed,
            "config": run_config or {}, "data": data_info(data),
            "state_dict": {"user": self.module_.user.detach().cpu(), "item": self.module_.item.detach().cpu()},
            "result": self.result_.summary(),
            "metrics": metrics or {},
            # the validation score of every inference depth tried (empty when the depth was not selected)
            "depth_scores": {str(k): float(v) for k, v in getattr(self, "depth_scores_", {}).items()},
        })

    @classmethod
    def from_state(cls, data: Interactions, backend_cfg: dict[str, Any], train_cfg: dict[str, Any],
                   state: dict[str, torch.Tensor], seed: int = 0, device: str = "cpu") -> Backend:
        """Rebuild a fitted backend from saved configs and ego weights (``{"user": ..., "item": ...}``)."""
        backend = cls(from_dict(BackendConfig, backend_cfg), from_dict(TrainConfig, train_cfg), seed=seed)
        dev = resolve_device(device)
        module = backend.backbone.module(data.train, backend.config)
        if tuple(state["user"].shape) != tuple(module.user.shape) or tuple(state["item"].shape) != tuple(
                module.item.shape):
            raise ConfigError(f"saved embeddings {tuple(state['user'].shape)} / {tuple(state['item'].shape)} do not "
                              f"match the data and config.")
        module.load_state_dict({"user": state["user"], "item": state["item"]})
        backend.module_, backend.device_, backend.seen_ = module.to(dev).train(False), dev, data.train
        backend.result_ = TrainResult()
        return backend

    @classmethod
    def load(cls, path: str | os.PathLike[str], data: Interactions, device: str = "cpu") -> Backend:
        """Inference-ready backend from a checkpoint, checked against ``data``."""
        payload = load_checkpoint(path, "backend")
        check_data(payload, data, path)
        backend = cls.from_state(data, payload["backend"], payload["train"], payload["state_dict"],
                                 int(payload.get("seed", 0)), device)
        backend.result_ = TrainResult(best_epoch=payload["result"].get("best_epoch", 0))
        if payload.get("depth_scores"):
            backend.depth_scores_ = {int(k): float(v) for k, v in payload["depth_scores"].items()}
        backend.checkpoint_ = payload
        return backend


def build(name: str, **params: Any) -> Backend:
    """A backend by name with flat keyword parameters, e.g. ``build("lightgcn", layers=3, epochs=50, lr=1e-3)``.

    Keys of the backbone's config (e.g. :class:`SGLConfig`) and of :class:`TrainConfig` are accepted, plus
    ``seed``, ``quiet`` and ``metric``.
    """
    bkeys = {f.name for f in dataclasses.fields(backbone(name).config)}
    tkeys = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(params) - bkeys - tkeys - {"seed", "quiet", "metric"})
    if unknown:
        raise ConfigError(f"unknown parameter {unknown[0]!r} for backend {name!r}.")
    bdict = {"name": name, **{k: v for k, v in params.items() if k in bkeys}}
    ev = from_dict(EvalConfig, {"metric": params["metric"]}) if "metric" in params else EvalConfig()
    return Backend(from_dict(BackendConfig, bdict), from_dict(TrainConfig, {k: v for k, v in params.items()
                                                                            if k in tkeys}),
                   ev, seed=params.get("seed", 0), quiet=params.get("quiet", False))


__all__ = ["Backend", "Backbone", "BackendConfig", "DEFAULT_LAYERS", "EaseFactorsConfig", "EmbeddingBackend",
           "IALSConfig", "ImportConfig", "LightGCNConfig", "MFConfig", "SGLConfig", "SGLModule", "backbone",
           "backbones", "build", "load_embeddings", "normalized_adjacency", "propagate"]
