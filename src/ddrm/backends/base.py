"""Embedding backends: the model DDRM plugs into. MF, LightGCN and SGL share one module."""

from __future__ import annotations

import copy
import logging
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.interactions import Interactions
from ..errors import ConfigError
from ..trainable import TrainableModule
from .graph import LAYER_COMBINES, normalized_adjacency, propagate

logger = logging.getLogger(__name__)

BackendName = Literal["mf", "lightgcn", "sgl", "import", "ease-factors", "ials"]
DEFAULT_LAYERS: dict[str, int] = {"mf": 0, "lightgcn": 3, "sgl": 3, "import": 0, "ease-factors": 0, "ials": 0}


@dataclass
class BackendConfig:
    """Backend settings.

    name : ``mf`` (dot product), ``lightgcn``, ``sgl``, ``import`` (existing embeddings) or ``ease-factors`` (a
        rank-``dim`` symmetric factorisation of EASE's item-item weights, closed form; see ``ease_factors``) or
        ``ials`` (the ``dim`` factors of iALS fitted by the ``implicit`` library; see ``ddrm.baselines.ials``)
    dim : embedding size; init_std : normal init scale of the ego embeddings
    layers : LightGCN propagation layers; not given: the backend's own default (``DEFAULT_LAYERS``: 3 for
        ``lightgcn`` / ``sgl``, 0 otherwise; on ``import`` / ``ease-factors`` applied on top of their embeddings)
    infer_layers : propagation layers of the final embeddings (scoring, and what DDRM sees); ``None`` = ``layers``.
        Training always propagates ``layers``.
    infer_layers_choices : if not empty, after training the depth among these with the best validation metric
        becomes ``infer_layers`` (selection on validation only; the validation scores are kept in the run's JSON)
    layer_combine : ``mean`` of the layers (LightGCN) or ``normalized_sum`` (each layer L2-normalised per row, the
        layers summed: how the DDRM reference code propagates its SGL backbone)
    reg : L2 weight on the batch's ego embeddings (LightGCN convention: 0.5 * sum of squares / batch)
    ssl_weight, ssl_temperature, ssl_ratio : SGL's InfoNCE weight, temperature and edge-dropout ratio
    path : for ``import``: a torch state dict (``.pt``) or ``.npz``; or a ddrm backend checkpoint
    user_key, item_key : the tensors to take from ``path`` (default: guessed from names and shapes)
    user_path, item_path : for ``import`` from two ``.npy`` matrices instead of ``path``
    ease_reg, ease_norm : for ``ease-factors``: EASE's L2 weight and the mean L2 norm of the item embeddings
    ials_reg, ials_alpha, ials_iterations : for ``ials``: its L2 weight, confidence weight and ALS sweeps
    denoise : denoising training of the BPR loss (Wang et al., WSDM 2021, adapted to BPR triples):
        ``none``; ``tce`` (truncated: drop the ``drop_rate`` fraction of triples with the largest loss in each batch,
        the rate rising linearly from 0 to ``tce_max_rate`` over ``tce_warmup`` steps); ``rce`` (reweighted: each
        triple's loss times ``sigmoid(s_pos) ** rce_beta``, without gradient through the weight)
    """

    name: BackendName = "lightgcn"
    dim: int = 64
    layers: int | None = None  # type: ignore[assignment]  # an int after __post_init__
    layer_combine: Literal["mean", "normalized_sum"] = "mean"
    infer_layers: int | None = None
    infer_layers_choices: list[int] = field(default_factory=list)
    reg: float = 1e-4
    init_std: float = 0.1
    ssl_weight: float = 0.1
    ssl_temperature: float = 0.2
    ssl_ratio: float = 0.1
    path: str | None = None
    user_key: str | None = None
    item_key: str | None = None
    user_path: str | None = None
    item_path: str | None = None
    ease_reg: float = 1000.0
    ease_norm: float = 1.0
    ials_reg: float = 1.0
    ials_alpha: float = 5.0
    ials_iterations: int = 15
    denoise: Literal["none", "tce", "rce"] = "none"
    tce_max_rate: float = 0.2
    tce_warmup: int = 10000
    rce_beta: float = 0.1

    def __post_init__(self) -> None:
        if self.layers is None:
            self.layers = DEFAULT_LAYERS.get(self.name, 0)

    def validate(self) -> None:
        if not 0 <= self.tce_max_rate < 1 or self.tce_warmup < 1 or self.rce_beta < 0:
            raise ConfigError("backend needs 0 <= tce_max_rate < 1, tce_warmup >= 1 and rce_beta >= 0.")
        if self.layer_combine not in LAYER_COMBINES:
            raise ConfigError(f"backend.layer_combine must be one of {', '.join(LAYER_COMBINES)}, "
                              f"not {self.layer_combine!r}.")
        if self.dim < 1 or self.layers < 0 or self.reg < 0 or self.init_std <= 0:
            raise ConfigError("backend needs dim >= 1, layers >= 0, reg >= 0 and init_std > 0.")
        if (self.infer_layers is not None and self.infer_layers < 0) or any(k < 0 for k in self.infer_layers_choices):
            raise ConfigError("backend.infer_layers and backend.infer_layers_choices must be >= 0.")
        if not 0 <= self.ssl_ratio < 1 or self.ssl_temperature <= 0 or self.ssl_weight < 0:
            raise ConfigError("backend needs 0 <= ssl_ratio < 1, ssl_temperature > 0 and ssl_weight >= 0.")
        if self.ease_reg <= 0 or self.ease_norm <= 0:
            raise ConfigError("backend needs ease_reg > 0 and ease_norm > 0.")
        if self.ials_reg < 0 or self.ials_alpha <= 0 or self.ials_iterations < 1:
            raise ConfigError("backend needs ials_reg >= 0, ials_alpha > 0 and ials_iterations >= 1.")
        if self.name == "import" and not (self.path or (self.user_path and self.item_path)):
            raise ConfigError("backend 'import' needs backend.path, or backend.user_path and backend.item_path.")


class EmbeddingBackend(TrainableModule):
    """User and item ego embeddings, optional LightGCN propagation, BPR loss, optional SGL contrastive loss.

    Parameters
    ----------
    train : [n_users, n_items] CSR training matrix (builds the graph when ``cfg.layers > 0``)
    cfg : the backend settings
    generator : seeds the initialisation
    """

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
        self.views: tuple[torch.Tensor, torch.Tensor] | None = None
        self._cache: tuple[tuple, tuple[torch.Tensor, torch.Tensor]] | None = None
        self._global_step = 0  # from on_step: T-CE's drop-rate schedule

    def __deepcopy__(self, memo: dict) -> EmbeddingBackend:
        """A copy with its own weights; the graph (read only; sparse tensors cannot be deep-copied) and the training
        matrix are shared."""
        shared = ("adj", "views", "_train")
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        for k, v in self.__dict__.items():
            new.__dict__[k] = v if k in shared else None if k == "_cache" else copy.deepcopy(v, memo)
        return new

    @property
    def uses_ssl(self) -> bool:
        return self.cfg.name == "sgl" and self.cfg.ssl_weight > 0

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
    def on_epoch_start(self, epoch: int, rng: np.random.Generator) -> None:
        """SGL-ED: draw two edge-dropout views of the graph for this epoch."""
        if self.uses_ssl:
            dev = self.user.device
            keep = [rng.random(self._train.nnz) >= self.cfg.ssl_ratio for _ in range(2)]
            self.views = tuple(normalized_adjacency(self._train, k).to(dev) for k in keep)  # type: ignore[assignment]

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """BPR + L2 on the batch's ego embeddings (+ SGL InfoNCE). Inputs int64 [B]."""
        u_all, i_all = self.propagated()
        u, p, n = u_all[users], i_all[pos], i_all[neg]
        s_pos = (u * p).sum(1)
        bpr = self._denoised_mean(F.softplus((u * n).sum(1) - s_pos), s_pos)
        reg = 0.5 * (self.user[users].pow(2).sum() + self.item[pos].pow(2).sum() + self.item[neg].pow(2).sum())
        reg = self.cfg.reg * reg / users.shape[0]
        terms = {"bpr": bpr, "reg": reg}
        if self.uses_ssl:
            if self.views is None:
                self.on_epoch_start(0, np.random.default_rng(0))
            assert self.views is not None
            u1, i1 = self.propagated(self.views[0])
            u2, i2 = self.propagated(self.views[1])
            uu, ii = torch.unique(users), torch.unique(pos)
            terms["ssl"] = self.cfg.ssl_weight * (_info_nce(u1[uu], u2[uu], self.cfg.ssl_temperature)
                                                  + _info_nce(i1[ii], i2[ii], self.cfg.ssl_temperature))
        terms["loss"] = sum(terms.values())  # type: ignore[assignment]
        return terms

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

    def scorer(self) -> EmbeddingBackend:
        return self


def _info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """InfoNCE between two views [N, d]: row k of ``a`` should match row k of ``b`` among all rows of ``b``."""
    a, b = F.normalize(a, dim=1), F.normalize(b, dim=1)
    logits = a @ b.T / temperature
    return F.cross_entropy(logits, torch.arange(a.shape[0], device=a.device), reduction="sum") / a.shape[0]


def check_shapes(user: torch.Tensor, item: torch.Tensor, data: Interactions, where: str) -> None:
    if user.ndim != 2 or item.ndim != 2 or user.shape[1] != item.shape[1]:
        raise ConfigError(f"{where}: user and item embeddings must be 2-D with the same width, got "
                          f"{tuple(user.shape)} and {tuple(item.shape)}.")
    if user.shape[0] != data.n_users or item.shape[0] != data.n_items:
        raise ConfigError(f"{where}: embeddings are {user.shape[0]} users x {item.shape[0]} items but the data has "
                          f"{data.n_users} x {data.n_items}.")


def history_mean(histories: list[np.ndarray], items: torch.Tensor) -> torch.Tensor:
    """Mean of ``items`` [n_items, d] over each history (item index arrays): [B, d]; zeros for an empty history."""
    counts = np.array([len(h) for h in histories], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    cols = np.concatenate([np.asarray(h, dtype=np.int64) for h in histories]) if counts.sum() else np.zeros(0, np.int64)
    return history_mean_csr(indptr, cols, items)


def history_mean_csr(indptr: np.ndarray, indices: np.ndarray, items: torch.Tensor) -> torch.Tensor:
    """Row means of ``items`` [n_items, d] over CSR rows (``indptr`` [B + 1], ``indices`` [nnz]): [B, d]."""
    counts = np.diff(indptr)
    rows = np.repeat(np.arange(counts.size), counts)
    w = torch.from_numpy((1.0 / np.maximum(counts, 1))[rows]).to(items.device, items.dtype)
    out = torch.zeros(counts.size, items.shape[1], device=items.device, dtype=items.dtype)
    idx = torch.from_numpy(np.asarray(indices, dtype=np.int64)).to(items.device)
    out.index_add_(0, torch.from_numpy(rows).to(items.device), items[idx] * w[:, None])
    return out
