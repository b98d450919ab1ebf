"""DDRM's hyper-parameters (``DDRMConfig``): diffusion, denoisers, loss, inference variants, fusion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..denoiser import Activation
from ..diffusion import Prediction, Schedule, make_betas
from ..errors import ConfigError

Start = Literal["history", "noise", "user", "mix"]
Guidance = Literal["user", "both"]
Precision = Literal[False, True, "auto"]


@dataclass
class DDRMConfig:
    """DDRM hyper-parameters (defaults: the reference MF configuration on ML-1M).

    steps : diffusion steps T; sampling_steps : reverse steps S at inference (None = T; S > T is an error)
    schedule, noise_scale, noise_min, noise_max, first_beta : the beta schedule (see ``make_betas``)
    prediction : the denoisers predict ``x0`` (DDRM) or ``eps``
    dims, activation, time_dim, dropout : denoiser MLP (mirrored hidden sizes) and its input dropout
    alpha : weight of the reconstruction loss against BPR; beta : reweighting exponent (0 = off)
    reconstruction : ablation switch; false drops the reconstruction term
    user_denoiser, item_denoiser : ablation switches; a disabled denoiser passes its input through
        (item denoiser off = rank by the history average itself)
    start : inference start point: ``history`` (average of the user's train items), ``noise`` (pure Gaussian
        noise), ``user`` (the user's own embedding) or ``mix``: ``(1 - start_mix) history + start_mix user``
        (``start_mix`` 0 and 1 are exactly the two pure starts)
    start_mix_choices : if not empty, after training ``start`` becomes ``mix`` with the ``start_mix`` among these
        that validates best (inference only: nothing is retrained)
    start_step : inference noise level decoupled from T: noise the start to step ``k`` (1..T) and run the ``k``
        remaining reverse steps (0 = rank by the start point itself); None = the paper (noise to T, run
        ``sampling_steps``). Not with ``sampling_steps`` nor with ``start: noise``
    start_step_choices : if not empty, after training (and after ``start_mix``) the best validated ``start_step``
    guidance : what conditions the item denoiser: ``user`` (the user's embedding, the paper) or ``both`` (the user's
        embedding and their history average, concatenated; trained that way)
    sampling_noise : add posterior noise in the reverse steps (the reference does not)
    freeze_backend : keep the backend fixed (its embeddings computed once) or fine-tune it jointly
    backend_lr : learning rate of the backend when ``freeze_backend`` is false
    bf16 : bfloat16 autocast for the denoiser MLPs (CPU and GPU): false, true, or ``auto``: a short probe at the
        start of training times the real step both ways and turns bf16 on only where it is clearly faster on this
        machine (CPUs with AMX; not CPUs with only AVX512-BF16, nor GPUs, where a step is launch-bound); the
        decision replaces ``auto`` in the trained model's config (``DDRM.bf16_probe_`` keeps the timings)
    fusion : rank by ``(1 - w) z(backend score) + w z(DDRM score)`` (each row standardised over the items) with this
        weight ``w`` in [0, 1]; ``None`` = DDRM's score alone (the paper). ``w = 0`` ranks exactly as the backend.
    fusion_choices : if not empty, after training the weight among these with the best validation ``eval.metric``
        becomes ``fusion`` (the first one on ties), so with 0 among the choices selection keeps or improves the
        backend on validation; the validation score of every choice is kept (``fusion_scores_``)

    The ``*_choices`` are selected one after the other on validation (start_mix, start_step, fusion), each given
    the ones before; with ``fusion_choices``, a start_mix / start_step candidate is judged by its best fused
    validation score. docs/method.md ("Variants") says which to use when.
    """

    steps: int = 20
    sampling_steps: int | None = None
    schedule: Schedule = "linear-var"
    noise_scale: float = 1e-4
    noise_min: float = 1e-4
    noise_max: float = 1e-3
    first_beta: float | None = 1e-5
    prediction: Prediction = "x0"
    dims: tuple[int, ...] = (100, 1000)
    activation: Activation = "sigmoid"
    time_dim: int = 10
    dropout: float = 0.5
    alpha: float = 0.4
    beta: float = 1.0
    reconstruction: bool = True
    user_denoiser: bool = True
    item_denoiser: bool = True
    start: Start = "history"
    start_mix: float = 0.5
    start_mix_choices: list[float] = field(default_factory=list)
    start_step: int | None = None
    start_step_choices: list[int] = field(default_factory=list)
    guidance: Guidance = "user"
    sampling_noise: bool = False
    freeze_backend: bool = True
    backend_lr: float = 1e-5
    bf16: Precision = False
    fusion: float | None = None
    fusion_choices: list[float] = field(default_factory=list)

    def validate(self) -> None:
        if self.sampling_steps is not None and not 0 <= self.sampling_steps <= self.steps:
            raise ConfigError(f"sampling_steps must be between 0 and steps={self.steps}, got {self.sampling_steps} "
                              f"(the reference code silently reuses the last step's coefficients beyond T).")
        if not 0 <= self.alpha <= 1 or self.beta < 0:
            raise ConfigError(f"alpha must be in [0, 1] and beta >= 0, got alpha={self.alpha}, beta={self.beta}.")
        if self.backend_lr <= 0:
            raise ConfigError("backend_lr must be > 0.")
        if any(not 0 <= w <= 1 for w in [*([] if self.fusion is None else [self.fusion]), *self.fusion_choices]):
            raise ConfigError("ddrm.fusion and ddrm.fusion_choices must lie in [0, 1] (0 = the backend's ranking, "
                              "1 = DDRM's).")
        if any(not 0 <= w <= 1 for w in [self.start_mix, *self.start_mix_choices]):
            raise ConfigError("ddrm.start_mix and ddrm.start_mix_choices must lie in [0, 1] (0 = the history "
                              "average, 1 = the user's embedding).")
        steps = [*([] if self.start_step is None else [self.start_step]), *self.start_step_choices]
        if any(isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= self.steps for k in steps):
            raise ConfigError(f"ddrm.start_step and ddrm.start_step_choices must be integers between 0 and "
                              f"steps={self.steps}.")
        if steps and self.sampling_steps is not None:
            raise ConfigError("give ddrm.start_step (noise the start to step k, run k reverse steps) or "
                              "ddrm.sampling_steps, not both.")
        if steps and self.start == "noise":
            raise ConfigError("ddrm.start_step needs a start point to noise; it does not apply to start: noise.")
        if not (isinstance(self.bf16, bool) or self.bf16 == "auto"):
            raise ConfigError(f"ddrm.bf16 must be true, false or auto, got {self.bf16!r}.")
        if self.guidance not in ("user", "both"):
            raise ConfigError(f"ddrm.guidance must be user or both, got {self.guidance!r}.")
        make_betas(self.schedule, self.steps, self.noise_scale, self.noise_min, self.noise_max, self.first_beta)

    @property
    def sampling(self) -> int:
        return self.steps if self.sampling_steps is None else self.sampling_steps
