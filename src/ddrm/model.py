"""DDRM: two conditional denoisers on top of a backend's embeddings (Zhao et al., SIGIR 2024).

Training (docs/method.md, section 4), for triples (u, i, j) and one t per triple:
    x0_hat_u = f_u(q_sample(e_u, t), e_i, t);  x0_hat_i = f_i(q_sample(e_i, t), e_u, t)
    s_pos = <x0_hat_u, x0_hat_i>;  s_neg = <x0_hat_u, e_j>
    L = mean[ sigmoid(s_pos)^beta (stop-grad) * ((1 - alpha) BPR + alpha * reconstruction) ]
Inference (section 5): start from the user's history average, noise it to step T - 1, run S reverse steps of the
item denoiser guided by e_u, and rank all items by <x, e_i>.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from . import distributed
from .backends import Backend
from .backends.base import EmbeddingBackend, history_mean, history_mean_csr
from .checkpoint import check_data, data_info, load_checkpoint, save_checkpoint
from .config.loader import from_dict, to_dict
from .config.model import DDRMConfig
from .config.training import EvalConfig, TrainConfig
from .data.interactions import Interactions
from .denoiser import MLPDenoiser
from .diffusion import (
    GaussianDiffusion,
    history_keys,
    inference_salt,
    keyed_normal,
    make_betas,
)
from .errors import ConfigError
from .precision import probe_bf16
from .recommender import Recommender
from .trainable import SeededModule
from .training import TrainResult, resolve_device, train_loop

logger = logging.getLogger(__name__)



class DDRMModule(SeededModule):
    """The trainable part: diffusion buffers + user and item denoisers, over a backend module.

    The backend module given is never changed. Frozen (``freeze_backend``), it is only read (its embeddings, through
    its one cache) and is not a child module: its weights are neither trained, moved nor saved with this module.
    Fine-tuned jointly, this module trains its own copy (a child module, saved as ``backend.*``).
    """

    def __init__(self, backend: EmbeddingBackend, train: sp.csr_matrix, cfg: DDRMConfig, seed: int = 0) -> None:
        super().__init__(seed + 1)  # the training generator: forward noise, timesteps, dropout
        self.cfg = cfg
        if cfg.freeze_backend:
            object.__setattr__(self, "backend", backend)  # read only: not registered as a child module
        else:
            self.backend = copy.deepcopy(backend)
        self.train_matrix = train
        d = backend.cfg.dim
        g = torch.Generator().manual_seed(seed)
        betas = make_betas(cfg.schedule, cfg.steps, cfg.noise_scale, cfg.noise_min, cfg.noise_max, cfg.first_beta)
        self.diffusion = GaussianDiffusion(betas, cfg.prediction)
        self.user_denoiser = MLPDenoiser(d, cfg.dims, cfg.time_dim, cfg.activation, cfg.dropout, g, cfg.steps)
        self.item_denoiser = MLPDenoiser(d, cfg.dims, cfg.time_dim, cfg.activation, cfg.dropout, g, cfg.steps,
                                         cond_dim=2 * d if cfg.guidance == "both" else d)
        self.seed = seed
        self._history: torch.Tensor | None = None

    def _apply(self, fn, recurse=True):
        self._history = None
        return super()._apply(fn, recurse)

    def train(self, mode: bool = True):
        if mode and not self.cfg.freeze_backend:
            self._history = None  # the backend is about to change
        return super().train(mode)

    @property
    def has_unused_parameters(self) -> bool:
        """A disabled denoiser keeps parameters that get no gradient (DistributedDataParallel must be told)."""
        return not (self.cfg.user_denoiser and self.cfg.item_denoiser)

    def load_state_dict(self, state, strict: bool = True, assign: bool = False):
        """Load the denoisers (and, fine-tuned jointly, the backend copy's ``backend.*``). A frozen backend is not part
        of this module: ``backend.*`` keys (checkpoints written before it was kept out) are ignored."""
        if self.cfg.freeze_backend:
            state = {k: v for k, v in state.items() if not k.startswith("backend.")}
        self._history = None
        return super().load_state_dict(state, strict=strict, assign=assign)

    # ------------------------------------------------------------------ embeddings
    def embeddings(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Backend embeddings: computed once when frozen, with gradient when fine-tuned."""
        if self.cfg.freeze_backend or not self.training:
            return self.backend.embeddings()
        return self.backend.propagated(layers=self.backend.final_layers)

    def history_average(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Mean item embedding [B, d] of each user's training items (zeros for a user without any)."""
        rows = self.train_matrix[users.cpu().numpy()]
        return history_mean_csr(rows.indptr, rows.indices, items)

    def guidance(self, e_u: torch.Tensor, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """The item denoiser's condition [B, d] (``user``) or [B, 2d] (``both``: [e_u, history average])."""
        if self.cfg.guidance == "user":
            return e_u
        if self.cfg.freeze_backend or not self.training:
            if self._history is None:  # every user's history average, once per set of embeddings
                m = self.train_matrix
                self._history = history_mean_csr(m.indptr, m.indices, items.detach())
            h = self._history[users]
        else:
            h = self.history_average(users, items)
        return torch.cat([e_u, h], dim=1)

    # ------------------------------------------------------------------ training
    def _autocast(self):
        dev = self.diffusion.betas.device.type
        return torch.autocast(dev, dtype=torch.bfloat16, enabled=self.cfg.bf16)

    def denoise_pair(self, e_u: torch.Tensor, e_i: torch.Tensor, t: torch.Tensor,
                     generator: torch.Generator | None = None, cond_u: torch.Tensor | None = None
                     ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x0_hat_u, x0_hat_i) [B, d] from noised e_u / e_i at steps t, each guided by the other's clean embedding
        (the item's guidance: ``cond_u`` [B, d or 2d] when given, see ``guidance``; else e_u).

        Randomness (forward noise, dropout) comes from ``generator``, by default the training generator.
        """
        g = generator if generator is not None else self.generator
        cond_u = e_u if cond_u is None else cond_u
        with self._autocast():
            xu = (self.user_denoiser(self.diffusion.q_sample(e_u, t, generator=g), e_i, t, g)
                  if self.cfg.user_denoiser else e_u)
            xi = (self.item_denoiser(self.diffusion.q_sample(e_i, t, generator=g), cond_u, t, g)
                  if self.cfg.item_denoiser else e_i)
        return xu.float(), xi.float()

    def loss(self, users: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
        """Reweighted (1 - alpha) BPR + alpha reconstruction; int64 triples [B]."""
        u_all, i_all = self.embeddings()
        e_u, e_i, e_j = u_all[users], i_all[pos], i_all[neg]
        t = torch.randint(0, self.cfg.steps, (users.shape[0],), generator=self.generator, device=users.device)
        xu, xi = self.denoise_pair(e_u, e_i, t, cond_u=self.guidance(e_u, users, i_all))
        s_pos = (xu * xi).sum(1)
        s_neg = (xu * e_j).sum(1)
        bpr = -F.logsigmoid(s_pos - s_neg)
        rec = ((e_u - xu).pow(2).mean(1) + (e_i - xi).pow(2).mean(1)) / 2
        alpha = self.cfg.alpha if self.cfg.reconstruction else 0.0
        weight = torch.sigmoid(s_pos.detach()).pow(self.cfg.beta) if self.cfg.beta > 0 else torch.ones_like(s_pos)
        loss = (weight * ((1 - alpha) * bpr + alpha * rec)).mean()
        return {"loss": loss, "bpr": bpr.mean().detach(), "rec": rec.mean().detach(),
                "weight": weight.mean().detach()}

    def probe_step(self, batch: int, bf16: bool) -> None:
        """One training step's forward and backward on ``batch`` random triples with bf16 autocast on or off,
        leaving no trace (the training generator is restored, the gradients dropped): what ``bf16: auto`` times."""
        state, cfg = self.generator.get_state(), self.cfg
        dev = self.diffusion.betas.device
        g = torch.Generator(device=dev).manual_seed(0)
        users, pos, neg = (torch.randint(0, n, (batch,), generator=g, device=dev)
                           for n in (self.backend.n_users, self.backend.n_items, self.backend.n_items))
        self.cfg = dataclasses.replace(cfg, bf16=bf16)
        try:
            self.loss(users, pos, neg)["loss"].backward()
        finally:
            self.cfg = cfg
            self.generator.set_state(state)
            self.zero_grad(set_to_none=True)

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def generate(self, users: torch.Tensor) -> torch.Tensor:
        """The generated "ideal item" embedding [B, d] for user indices [B]; its noise is keyed by the user."""
        u_all, i_all = self.backend.embeddings()
        users = users.to(u_all.device)
        e_u = u_all[users]
        start, w = self.cfg.start, self.cfg.start_mix
        if start == "mix" and w in (0, 1):
            start = "user" if w == 1 else "history"
        if start == "history":
            x0 = self.history_average(users, i_all)
        elif start == "user":
            x0 = e_u
        elif start == "mix":
            x0 = torch.lerp(self.history_average(users, i_all), e_u, w)
        else:
            x0 = None
        return self.reverse(x0, self.guidance(e_u, users, i_all), users)

    def _noise(self, keys: torch.Tensor, step: int, like: torch.Tensor, seed: int | None) -> torch.Tensor:
        """Inference noise [B, d] for step ``step`` (T = the start's noising), keyed by ``keys`` [B]."""
        return keyed_normal(keys, like.shape[1], inference_salt(self.seed if seed is None else seed, step), like.dtype)

    @torch.no_grad()
    def reverse(self, x0: torch.Tensor | None, cond: torch.Tensor, keys: torch.Tensor, seed: int | None = None
                ) -> torch.Tensor:
        """Noise the start point ``x0`` [B, d] to step T - 1 (pure noise when None) and run the S reverse steps of
        the item denoiser guided by ``cond`` [B, d] ([B, 2d] for ``guidance: both``); returns [B, d]. With
        ``start_step`` k: noise to step k - 1 and run the k reverse steps k - 1 .. 0 (k = 0: ``x0`` itself).
        ``x0`` itself when the item denoiser is off.

        Every noise row is keyed by ``keys`` [B] (user indices, or history hashes for fold-in users) and the seed
        (``seed``, default the model's): a user's result does not depend on the batch it is computed in.
        """
        d = self.backend.cfg.dim
        if not self.cfg.item_denoiser:
            return x0 if x0 is not None else cond[:, :d]
        T, S, n, dev = self.cfg.steps, self.cfg.sampling, cond.shape[0], cond.device
        k = self.cfg.start_step
        if x0 is not None and k is not None:
            if k == 0:
                return x0.float()
            T = S = k
        keys = keys.to(dev)
        start = self._noise(keys, self.cfg.steps, cond[:, :d], seed)  # keyed by T whatever k: k = T is the paper's
        x = start if x0 is None else self.diffusion.q_sample(x0, torch.full((n,), T - 1, device=dev), noise=start)
        den, coefs = self.item_denoiser, self.diffusion.scalar_coefficients()
        with self._autocast():
            cond_part = den.condition_part(cond)
            for step in range(S - 1, -1, -1):
                out = den.forward_prepared(x, cond_part, den.time_part(step, x)).float()
                noise = self._noise(keys, step, out, seed) if self.cfg.sampling_noise and step > 0 else None
                x = self.diffusion.step_at(out, x.float(), step, self.cfg.sampling_noise, coefs=coefs, noise=noise)
        return x.float()

    def scorer(self) -> DDRMModule:
        return self

    @torch.no_grad()
    def score(self, users: torch.Tensor) -> torch.Tensor:
        """<generated item, e_i> for every item: [B, n_items]. Inference noise is keyed per user."""
        return self.generate(users) @ self.backend.embeddings()[1].T

    @torch.no_grad()
    def positive_scores(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """s_pos = <x0_hat_u, x0_hat_i> at t = 0 without dropout, for (user, item) pairs [n] (noise detection)."""
        u_all, i_all = self.backend.embeddings()
        t = torch.zeros(users.shape[0], dtype=torch.long, device=u_all.device)
        g = torch.Generator(device=u_all.device).manual_seed(self.seed + 3)
        xu, xi = self.denoise_pair(u_all[users], i_all[items], t, g, self.guidance(u_all[users], users, i_all))
        return (xu * xi).sum(1)


def _standardise(scores: torch.Tensor) -> torch.Tensor:
    """Each row [B, n] to zero mean and unit standard deviation (a constant row to zeros)."""
    scores = scores.float()
    mean = scores.mean(dim=1, keepdim=True)
    return (scores - mean) / scores.std(dim=1, keepdim=True).clamp_min(1e-12)


class DDRM(Recommender):
    """DDRM on top of a :class:`~ddrm.backends.Backend`.

    Parameters
    ----------
    backend : a fitted backend (trained, imported or loaded)
    config : :class:`DDRMConfig`; keyword overrides (``steps=50, alpha=0.1, ...``) are applied on top
    train : optimisation (denoisers use ``train.lr``); keyword overrides of its keys (``epochs=20, lr=1e-3,
        batch_size=...``, as ``ddrm.backends.build`` takes them) are applied on top
    eval : validation protocol; seed : all randomness
    """

    name = "ddrm"

    def __init__(self, backend: Backend, config: DDRMConfig | None = None, train: TrainConfig | None = None,
                 eval: EvalConfig | None = None, seed: int = 0, quiet: bool = False, **overrides: Any) -> None:
        self.backend = backend
        base, optim = to_dict(config or DDRMConfig()), to_dict(train or TrainConfig())
        unknown = sorted(set(overrides) - set(base) - set(optim))
        if unknown:
            raise ConfigError(f"unknown DDRM parameter {unknown[0]!r}; DDRM takes the keys of DDRMConfig "
                              f"({', '.join(base)}) and of TrainConfig ({', '.join(optim)}).")
        self.config = from_dict(DDRMConfig, {**base, **{k: v for k, v in overrides.items() if k in base}})
        self.train = from_dict(TrainConfig, {**optim, **{k: v for k, v in overrides.items() if k in optim}})
        self.eval = eval or EvalConfig()
        self.seed = seed
        self.quiet = quiet

    @property
    def config(self) -> DDRMConfig:
        """The DDRM configuration; assigning one (e.g. ``dataclasses.replace(model.config, fusion=0.3)``) also
        reaches the trained module, so inference options chosen after training take effect."""
        return self._config

    @config.setter
    def config(self, cfg: DDRMConfig) -> None:
        self._config = cfg
        module = self.__dict__.get("module_")
        if module is not None:
            module.cfg = cfg

    def params(self) -> dict[str, Any]:
        return to_dict(self.config)

    def _build(self, data: Interactions, device: torch.device | str = "cpu") -> DDRMModule:
        """The module on ``device``; a frozen backend on another device is read through a copy there (the
        backend given is never moved)."""
        self.backend._check_fitted()
        b = self.backend.module_
        if (b.n_users, b.n_items) != (data.n_users, data.n_items):
            raise ConfigError(f"the backend has {b.n_users} users x {b.n_items} items but the data has "
                              f"{data.n_users} x {data.n_items}.")
        if self.config.freeze_backend and b.user.device != torch.device(device):
            b = copy.deepcopy(b).to(device)
        return DDRMModule(b, data.train, self.config, self.seed).to(device)

    def fit(self, data: Interactions, state_path: str | os.PathLike[str] | None = None,
            on_validation: Callable[[int, float], None] | None = None) -> DDRM:
        """Train the denoisers (and the backend when ``freeze_backend`` is false); keeps the best validation state.

        ``state_path``: resumable training state, written every epoch and on SIGINT/SIGTERM (see ``train_loop``);
        ``on_validation(epoch, score)``: called after every validation after which training goes on (see ``train_loop``).
        """
        device = resolve_device(self.train.device)
        self.module_ = self._build(data, device)
        self.device_ = device
        self.seen_ = data.train
        self.bf16_probe_: dict[str, Any] | None = None
        if self.config.bf16 == "auto":
            self.module_.train(True)
            batch = max(1, self.train.batch_size // distributed.world_size())
            use, self.bf16_probe_ = probe_bf16(functools.partial(self.module_.probe_step, batch), device)
            self.config = dataclasses.replace(self.config, bf16=use)
        logger.info("DDRM: noise-to-signal ratio at T: %.4g (std of injected noise per unit of signal); "
                    "measured on this backend: %.4g", self.module_.diffusion.noise_to_signal(),
                    self.measured_noise_ratio())
        groups = [{"params": list(self.module_.user_denoiser.parameters())
                   + list(self.module_.item_denoiser.parameters())}]
        if not self.config.freeze_backend:
            groups.append({"params": list(self.module_.backend.parameters()), "lr": self.config.backend_lr})
        self.result_: TrainResult = train_loop(self.module_, data, self.train, self.eval, self.seed, self.quiet,
                                               desc="ddrm", device=device, params=groups,
                                               state_path=state_path, on_validation=on_validation)
        self.module_.train(False)
        self.select_inference(data)
        return self

    def select_inference(self, data: Interactions) -> dict[str, dict[float, float]]:
        """Choose, one after the other on validation, ``start_mix`` (then ``start: mix``), ``start_step`` and
        ``fusion`` among their ``*_choices`` (those that are not empty); nothing is retrained.

        With ``fusion_choices``, each start_mix / start_step candidate is scored by its best fused validation score
        (every fusion weight evaluated from one generation per batch), so an option is kept for what it adds to
        the fused ranking, not to DDRM's score alone. Returns (and keeps in ``selection_``) every choice's
        validation score per option; ``fusion_scores_`` is the fusion one."""
        self.selection_: dict[str, dict[float, float]] = {}
        for option, choices in (("start_mix", self.config.start_mix_choices),
                                ("start_step", self.config.start_step_choices)):
            if not choices:
                continue
            cast = int if option == "start_step" else float
            scores: dict[float, float] = {}
            for value in dict.fromkeys(cast(v) for v in choices):
                self._use(option, value)
                scores[value] = max(self._fusion_validation(data).values())
            best = max(scores, key=lambda k: scores[k])
            self._use(option, best)
            self._log_choice(option, best, scores)
        if self.config.fusion_choices:
            scores = self._fusion_validation(data)
            best = max(scores, key=lambda k: scores[k])
            self.config = dataclasses.replace(self.config, fusion=best)
            self._log_choice("fusion", best, scores)
            self.fusion_scores_ = scores
        return self.selection_

    def _use(self, option: str, value: float) -> None:
        extra = {"start": "mix"} if option == "start_mix" else {}
        self.config = dataclasses.replace(self.config, **{option: value, **extra})

    def _log_choice(self, option: str, best: float, scores: dict[float, float]) -> None:
        self.selection_[option] = scores
        logger.info("%s: %g (validation %s %s)", option, best, self.eval.metric,
                    ", ".join(f"{k:g}: {v:.4f}" for k, v in scores.items()))

    def _fusion_validation(self, data: Interactions) -> dict[float, float]:
        """Validation ``eval.metric`` of every ``fusion_choices`` weight with the current inference settings
        (``{fusion: score}``; without choices, the current ``fusion`` alone), DDRM's and the backend's scores
        computed once per batch."""
        from .evaluation import evaluate_variants

        weights = list(dict.fromkeys(float(w) for w in self.config.fusion_choices)) or [self.config.fusion]
        def variants(users: torch.Tensor) -> Iterator[torch.Tensor]:
            return self._fused_variants(lambda: self.module_.score(users), lambda: self.backend.score(users), weights)

        results = evaluate_variants(variants, len(weights), data, "valid", self.eval.ks, self.eval.batch_size,
                                    device=self.device_)
        return {w: r.metrics[self.eval.metric] for w, r in zip(weights, results, strict=True)}

    def _fused_variants(self, ddrm_scores: Callable[[], torch.Tensor], backend_scores: Callable[[], torch.Tensor],
                        weights: list[float | None]) -> Iterator[torch.Tensor]:
        """The scores [B, n_items] of each fusion weight in turn, ``(1 - w) z(backend) + w z(ddrm)`` per row (w = 1
        or None: DDRM's scores, w = 0: the backend's); each of the two is computed once, and only if a weight needs
        it."""
        d = ddrm_scores() if any(w != 0 for w in weights) else None
        b = backend_scores() if any(w not in (None, 1) for w in weights) else None
        mixed = any(w not in (None, 0, 1) for w in weights)
        zd = _standardise(d) if mixed else None
        zb = _standardise(b.to(d.device)) if mixed else None
        for w in weights:
            if w is None or w == 1:
                yield d
            elif w == 0:
                yield b
            else:
                yield (1 - w) * zb + w * zd

    def _fuse(self, ddrm_scores: Callable[[], torch.Tensor], backend_scores: Callable[[], torch.Tensor]
              ) -> torch.Tensor:
        """The scores at the configured ``fusion`` weight (see ``_fused_variants``)."""
        return next(self._fused_variants(ddrm_scores, backend_scores, [self.config.fusion]))

    def measured_noise_ratio(self) -> float:
        """Mean ||q_sample(e, T-1) - sqrt(abar) e|| / ||e|| over item embeddings: the noise actually injected."""
        items = self.backend.item_embeddings()
        d = self.module_.diffusion
        k = d.steps - 1
        noise_norm = float(d.sqrt_one_minus_alphas_cumprod[k]) * np.sqrt(items.shape[1])
        return float((noise_norm / items.norm(dim=1).clamp_min(1e-12)).mean())

    def generate(self, users: torch.Tensor) -> torch.Tensor:
        """Generated ideal-item embeddings [B, d]."""
        self._check_fitted()
        return self.module_.generate(users)

    def score(self, users: torch.Tensor) -> torch.Tensor:
        """Scores [B, n_items] of every item against the generated ideal item (fused with the backend's scores when
        ``fusion`` is set)."""
        self._check_fitted()
        return self._fuse(lambda: self.module_.score(users), lambda: self.backend.score(users))

    @torch.no_grad()
    def score_history(self, histories: list[np.ndarray], seed: int | None = None) -> torch.Tensor:
        """Scores [B, n_items] for users *not in training*, each given by an array of item indices (fold-in).

        The history average of the item embeddings is both the start point (as for known users) and the guidance:
        a new user has no learned embedding, and the history average is the backend's own estimate of it (exact for
        MF-style fold-in; for graph backends it is the propagated item embeddings' mean).
        """
        self._check_fitted()
        i_all = self.module_.backend.embeddings()[1]  # the module's backend: a jointly fine-tuned copy, if any
        avg = history_mean(histories, i_all)
        x0 = None if self.config.start == "noise" else avg
        keys = history_keys(histories, i_all.device)
        cond = avg if self.config.guidance == "user" else torch.cat([avg, avg], dim=1)
        return self._fuse(lambda: self.module_.reverse(x0, cond, keys, seed) @ i_all.T,
                          lambda: self.backend.score_history(histories))

    def noise_scores(self, data: Interactions) -> np.ndarray:
        """DDRM's reweighting score s_pos for every training interaction (CSR order) [nnz]; low = likely noise."""
        self._check_fitted()
        users, items = data.pairs("train")
        out = []
        self.module_.train(False)
        for lo in range(0, users.size, 65536):
            u = torch.from_numpy(users[lo:lo + 65536]).to(self.device_)
            i = torch.from_numpy(items[lo:lo + 65536]).to(self.device_)
            out.append(self.module_.positive_scores(u, i).cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0)

    # ------------------------------------------------------------------ checkpoints
    def save(self, path: str | os.PathLike[str], data: Interactions, run_config: dict[str, Any] | None = None,
             metrics: dict[str, Any] | None = None) -> None:
        """Atomic ``.pt``: DDRM config, denoiser weights, the backend's config and weights, data fingerprint."""
        self._check_fitted()
        b = self.backend
        save_checkpoint(path, {
            "kind": "ddrm", "ddrm": to_dict(self.config), "train": to_dict(self.train), "seed": self.seed,
            "config": run_config or {}, "data": data_info(data),
            "state_dict": {k: v.detach().cpu() for k, v in self.module_.state_dict().items()},
            "backend": {"backend": to_dict(b.config), "train": to_dict(b.train), "seed": b.seed,
                        "state_dict": {"user": b.module_.user.detach().cpu(), "item": b.module_.item.detach().cpu()}},
            "result": self.result_.summary(),
            "metrics": metrics or {},
        })

    @classmethod
    def load(cls, path: str | os.PathLike[str], data: Interactions, device: str = "cpu") -> DDRM:
        """Inference-ready DDRM (with its backend) from a checkpoint, checked against ``data``."""
        payload = load_checkpoint(path, "ddrm")
        check_data(payload, data, path)
        bp = payload["backend"]
        backend = Backend.from_state(data, bp["backend"], bp["train"], bp["state_dict"], bp.get("seed", 0), device)
        model = cls(backend, from_dict(DDRMConfig, payload["ddrm"]), from_dict(TrainConfig, payload["train"]),
                    seed=int(payload.get("seed", 0)))
        dev = resolve_device(device)
        module = model._build(data, dev)
        try:
            module.load_state_dict(payload["state_dict"])
        except RuntimeError as exc:
            raise ConfigError(f"{path}: denoiser weights do not match the saved config ({str(exc)[:120]}).") from None
        model.module_, model.device_, model.seen_ = module.train(False), dev, data.train
        model.result_ = TrainResult(best_epoch=payload["result"].get("best_epoch", 0))
        model.checkpoint_ = payload
        return model
