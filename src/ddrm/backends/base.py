"""What every embedding backbone shares: the module (ego embeddings, graph propagation, BPR
with optional T-CE / R-CE denoising, the one cache of the final embeddings). Each backbone has its own file."""

from __future__ import annotations

import copy
import logging
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..config.backbones import BackendConfig
from ..data.interactions import Interactions, history_rows
from ..errors import ConfigError
from ..trainable import TrainableModule
from .graph import normalized_adjacency, propagate

logger = logging.getLogger(__name__)



class EmbeddingBackend(TrainableModule):
    """User and item ego embeddings, optional LightGCN propagation, BPR loss with optional T-CE / R-CE denoising.

    MF, LightGCN and the given backbones (import, ease-factors, ials) are this module; SGL subclasses it
    (``sgl.SGLModule``) to add its contrastive loss through ``extra_terms``.

    Parameters
    ----------
    train : [n_users, n_items] CSR training matrix (builds the graph when ``cfg.layers > 0``)
    cfg : the backbone's settings
    generator : seeds the initialisation
    """

    shared_attrs: ClassVar[tuple[str, ...]] = ("adj", "_train")  # shared by copies (read only)

    def __init__(self, train, cfg: BackendConfig, generator: torch.Generator | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_users, self.n_items = train.shape
        self._train = train
        g = generator or torch.Generator().manual_seed(0)
        self.user = nn.Parameter(torch.randn(self.n_users, cfg.dim, generator=g) * cfg.init_std)
        self.item = nn.Parameter(torch.randn(self.n_items, cfg.dim, generator=g) * cfg.init_std)
        depth = max([cfg.layers, cfg.infer_layers or 0, *cfg.infer_layers_choices])
        self.adj = normalized_adjacency(train) if depth > 0 else None
        self._cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._global_step = 0  # from on_step: T-CE's drop-rate schedule

    def __deepcopy__(self, memo: dict) -> EmbeddingBackend:
        """A copy with its own weights; the graph (read only; sparse tensors cannot be deep-copied) and the training
        matrix are shared."""
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = v if k in self.shared_attrs else None if k == "_cache" else copy.deepcopy(v, memo)
        return new

    def _apply(self, fn, recurse=True):  # keep sparse graphs on the module's device
        out = super()._apply(fn, recurse)
        if self.adj is not None:
            self.adj = fn(self.adj)
        return out

    @property
    def final_layers(self) -> int:
        """Propagation depth of the final embeddings: ``infer_layers``, or ``layers`` when it is not set."""
        return self.cfg.layers if self.cfg.infer_layers is None else self.cfg.infer_layers

    def propagated(self, adj: torch.Tensor | None = None, layers: int | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Embeddings (users [n_users, d], items [n_items, d]) propagated through ``adj`` (default: the full graph)
        over ``layers`` layers (default: the training depth ``cfg.layers``)."""
        return propagate(self.user, self.item, adj if adj is not None else self.adj,
                         self.cfg.layers if layers is None else layers, self.cfg.layer_combine)

    # -------------------------------------------------------------------------- training
    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR + L2 on the batch's ego embeddings (+ ``extra_terms``). Inputs int64 [B]."""
        u_all, i_all = self.propagated()
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        s_pos = (u * p).sum(1)
        bpr = self._denoised_mean(F.softplus((u * n).sum(1) - s_pos), s_pos)
        reg = 0.5 * (self.user[users].pow(2).sum() + self.item[pos].pow(2).sum() + self.item[neg].pow(2).sum())
        terms = {"bpr": bpr, "reg": self.cfg.reg * reg / users.shape[0], **self.extra_terms(users, pos)}
        terms["loss"] = sum(terms.values())  # type: ignore[assignment]
        return terms

    def extra_terms(self, users: torch.Tensor, pos: torch.Tensor) -> dict[str, torch.Tensor]:
        """Loss terms a backbone adds to BPR for the batch's users and positives [B] (none here)."""
        return {}

    def on_step(self, step: int) -> None:
        """The global training step (from the training loop, exact under resumption): drives T-CE's drop rate."""
        self._global_step = step

    def drop_rate(self) -> float:
        """T-CE's current drop rate: linear from 0 to ``tce_max_rate`` over ``tce_warmup`` steps."""
        return self.cfg.tce_max_rate * min(1.0, self._global_step / self.cfg.tce_warmup)

    def _denoised_mean(self, losses: torch.Tensor, s_pos: torch.Tensor) -> torch.Tensor:
        """Mean per-triple loss [B] -> scalar under ``cfg.denoise`` (plain mean, T-CE truncation or R-CE weights)."""
        if self.cfg.denoise == "tce" and self.training:
            keep = max(1, int(round((1.0 - self.drop_rate()) * losses.shape[0])))
            return torch.topk(losses, keep, largest=False).values.mean()
        if self.cfg.denoise == "rce" and self.training:
            return (torch.sigmoid(s_pos).detach().pow(self.cfg.rce_beta) * losses).mean()
        return losses.mean()

    # -------------------------------------------------------------------------- inference
    def _weights_key(self) -> tuple:
        """What the final embeddings depend on: the weights' storage and version counters (every in-place update,
        an optimiser step or ``load_state_dict``, bumps a version), the device and the depth."""
        return (self.user.data_ptr(), self.user._version, self.item.data_ptr(), self.item._version,
                self.user.device, self.final_layers, self.cfg.layer_combine)

    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Final embeddings (users [n_users, d], items [n_items, d]), ``final_layers`` deep, without gradient.

        The one cache of ddrm's embeddings: computed once and reused until the weights, their device or the depth
        change (``_weights_key``); nobody resets it by hand.
        """
        key = self._weights_key()
        if self._cache is None or self._cache[0] != key:
            with torch.no_grad():
                u, i = self.propagated(layers=self.final_layers)
            self._cache = (key, (u.detach(), i.detach()))
        return self._cache[1]

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Dot-product scores [B, n_items] for user indices [B]."""
        u, i = self.embeddings()
        return u[users.to(u.device)] @ i.T

    def fold_in(self, histories: list[np.ndarray]) -> torch.Tensor:
        """User embeddings [B, d] for users not in training, each given by item indices: by default the history
        average of the final item embeddings (the usual fold-in); a backbone with a better rule overrides it."""
        return history_mean(histories, self.embeddings()[1])

    def scorer(self) -> EmbeddingBackend:
        return self


def check_shapes(user: torch.Tensor, item: torch.Tensor, data: Interactions, where: str) -> None:
    if user.ndim != 2 or item.ndim != 2 or user.shape[1] != item.shape[1]:
        raise ConfigError(f"{where}: user and item embeddings must be 2-D with the same width, got "
                          f"{tuple(user.shape)} and {tuple(item.shape)}.")
    if user.shape[0] != data.n_users or item.shape[0] != data.n_items:
        raise ConfigError(f"{where}: embeddings are {user.shape[0]} users x {item.shape[0]} items but the data has "
                          f"{data.n_users} x {data.n_items}.")


def history_mean(histories: list[np.ndarray], items: torch.Tensor) -> torch.Tensor:
    """Mean of ``items`` [n_items, d] over each history (item index arrays): [B, d]; zeros for an empty history."""
    return history_mean_csr(*history_rows(histories), items)


def history_mean_csr(indptr: np.ndarray, indices: np.ndarray, items: torch.Tensor) -> torch.Tensor:
    """Row means of ``items`` [n_items, d] over CSR rows (``indptr`` [B + 1], ``indices`` [nnz]): [B, d]."""
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(counts.size), counts)
    w = torch.from_numpy((1.0 / np.maximum(counts, 1))[rows]).to(items.device, items.dtype)
    out = torch.zeros(counts.size, items.shape[1], device=items.device, dtype=items.dtype)
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(items.device)
    out.index_add_(0, torch.from_numpy(rows).to(items.device), items[idx] * w[:, None])
    return out
