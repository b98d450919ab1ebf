"""Gaussian diffusion on embeddings: beta schedules, forward noising, posterior, one reverse step.

The schedule object never calls a network: the caller runs the denoiser and hands its output to :meth:`step`.
Notation: T = ``steps``; t in {0, ..., T-1}; ``abar_t = prod_{s<=t} (1 - beta_s)``.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from .data.interactions import history_rows
from .errors import ConfigError

Schedule = Literal["linear", "linear-var", "cosine", "binomial"]
Prediction = Literal["x0", "eps"]
MAX_BETA = 0.999
_M32 = 0xFFFFFFFF


def _mul32(x: torch.Tensor, c: int) -> torch.Tensor:
    """``(x * c) mod 2**32`` for int64 ``x`` in [0, 2**32) and a 32-bit constant, without int64 overflow."""
    return (x * (c & 0xFFFF) + (((x * (c >> 16)) & 0xFFFF) << 16)) & _M32


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijective 32-bit integer hash (Wellons' lowbias32) of int64 values in [0, 2**32), elementwise."""
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def inference_salt(seed: int, step: int = 0) -> int:
    """The ``keyed_normal`` salt of a model's inference noise at ``step`` (models differ by seed, steps by step)."""
    return (seed + 2) * 100_003 + step


def keyed_normal(keys: torch.Tensor, dim: int, salt: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Standard normal noise [B, dim] whose row b depends only on ``(keys[b], salt)``: a key gets the same noise
    whatever batch, batch size or process draws it (counter-based: hashed integers -> Box-Muller).

    keys : int64 [B], >= 0 (a user index, or a hash of a fold-in history); salt : int (seed and step).
    """
    k = keys.to(torch.int64).reshape(-1, 1) & _M32
    s = int(mix32(torch.tensor(salt & _M32, dtype=torch.int64)))
    h = mix32((mix32(k) + s) & _M32)
    cols = torch.arange(dim, device=keys.device, dtype=torch.int64).reshape(1, -1)
    a = mix32((h + _mul32(2 * cols + 1, 0x9E3779B9)) & _M32)
    b = mix32((h + _mul32(2 * cols + 2, 0x9E3779B9)) & _M32)
    u1 = (a.double() + 0.5) / 2.0**32  # in (0, 1): the log is finite
    u2 = (b.double() + 0.5) / 2.0**32
    return (torch.sqrt(-2.0 * torch.log(u1)) * torch.cos(2.0 * math.pi * u2)).to(dtype)


def history_keys(histories: list[np.ndarray], device: torch.device | str = "cpu") -> torch.Tensor:
    """A noise key per fold-in history: int64 [B], a hash of the set of items (order and batch do not matter;
    offset past 2**32 so that it never equals a known user's index)."""
    indptr, indices = history_rows(histories)
    items = torch.from_numpy(indices)
    rows = torch.repeat_interleave(torch.arange(len(histories)), torch.from_numpy(np.diff(indptr)))
    uniq = torch.unique(torch.stack([rows, items]), dim=1)  # each item once per history
    sums = torch.zeros(len(histories), dtype=torch.int64).index_add_(0, uniq[0], mix32(uniq[1] & 0xFFFFFFFF))
    return (mix32(sums & 0xFFFFFFFF) + (1 << 32)).to(device)


def make_betas(schedule: Schedule, steps: int, scale: float = 1.0, beta_min: float = 1e-4, beta_max: float = 2e-2,
               first_beta: float | None = None) -> np.ndarray:
    """Betas of shape [steps] (float64), as in DiffRec / DDRM.

    - ``linear``: ``linspace(scale * min, scale * max, steps)``
    - ``linear-var``: the variances ``1 - abar_t`` follow that linspace; ``beta_t = 1 - (1 - v_t) / (1 - v_{t-1})``,
      capped at 0.999
    - ``cosine``: Nichol & Dhariwal's ``abar(t) = cos^2((t + 0.008) / 1.008 * pi / 2)``, capped at 0.999
    - ``binomial``: ``beta_t = 1 / (T - t + 1)``

    ``first_beta`` overwrites beta at t = 0 (the reference code uses 1e-5). Invalid settings raise ConfigError.
    """
    if not isinstance(steps, int) or steps < 1:
        raise ConfigError(f"diffusion steps must be an integer >= 1, got {steps!r}.")
    if schedule in ("linear", "linear-var"):
        if not (scale > 0 and 0 < beta_min < beta_max):
            raise ConfigError(f"noise schedule needs scale > 0 and 0 < noise_min < noise_max, got scale={scale}, "
                              f"min={beta_min}, max={beta_max}.")
        if scale * beta_max >= 1:
            raise ConfigError(f"noise_scale * noise_max must be < 1, got {scale * beta_max}.")
        lin = np.linspace(scale * beta_min, scale * beta_max, steps, dtype=np.float64)
        if schedule == "linear":
            betas = lin
        else:
            abar = 1.0 - lin
            betas = np.empty(steps)
            betas[0] = 1.0 - abar[0]
            betas[1:] = np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)
    elif schedule == "cosine":
        t = np.arange(steps + 1, dtype=np.float64) / steps
        abar = np.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
        betas = np.minimum(1.0 - abar[1:] / abar[:-1], MAX_BETA)
    elif schedule == "binomial":
        betas = 1.0 / (steps - np.arange(steps, dtype=np.float64) + 1)
    else:
        raise ConfigError(f"unknown noise schedule {schedule!r}; use linear, linear-var, cosine or binomial.")
    if first_beta is not None:
        betas = betas.copy()
        betas[0] = first_beta
    if not ((betas > 0) & (betas <= 1)).all():
        raise ConfigError(f"betas must lie in (0, 1]; this schedule gives [{betas.min():.3g}, {betas.max():.3g}].")
    return betas


def _gather(values: torch.Tensor, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """values[t] as [B, 1] in ``like``'s dtype, for broadcasting against [B, d]."""
    return values[t].to(like.dtype).unsqueeze(-1)


class GaussianDiffusion(nn.Module):
    """Schedule tensors as (float64) buffers so ``.to(device)`` and ``state_dict()`` just work.

    Parameters
    ----------
    betas : [T] noise schedule from :func:`make_betas`
    prediction : what the denoiser outputs, ``x0`` (DDRM) or ``eps``
    """

    def __init__(self, betas: np.ndarray | torch.Tensor, prediction: Prediction = "x0") -> None:
        super().__init__()
        if prediction not in ("x0", "eps"):
            raise ConfigError(f"prediction must be 'x0' or 'eps', got {prediction!r}.")
        self.prediction = prediction
        b = torch.as_tensor(np.asarray(betas), dtype=torch.float64)
        if b.ndim != 1 or not ((b > 0) & (b <= 1)).all():
            raise ConfigError("betas must be a 1-D array with values in (0, 1].")
        alphas = 1.0 - b
        abar = torch.cumprod(alphas, 0)
        abar_prev = torch.cat([torch.ones(1, dtype=torch.float64), abar[:-1]])
        self.register_buffer("betas", b)
        self.register_buffer("alphas_cumprod", abar)
        self.register_buffer("alphas_cumprod_prev", abar_prev)
        self.register_buffer("sqrt_alphas_cumprod", abar.sqrt())
        self.register_buffer("sqrt_one_minus_alphas_cumprod", (1.0 - abar).sqrt())
        self.register_buffer("posterior_variance", b * (1.0 - abar_prev) / (1.0 - abar))
        self.register_buffer("posterior_mean_coef1", b * abar_prev.sqrt() / (1.0 - abar))
        self.register_buffer("posterior_mean_coef2", (1.0 - abar_prev) * alphas.sqrt() / (1.0 - abar))

    @property
    def steps(self) -> int:
        return int(self.betas.shape[0])

    def check_timesteps(self, t: torch.Tensor) -> None:
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= self.steps):
            raise ConfigError(f"timesteps must lie in [0, {self.steps - 1}], got [{int(t.min())}, {int(t.max())}].")

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Forward process: ``x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) eps``; x0 [B, d], t int64 [B]."""
        if noise is None:
            noise = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
        return _gather(self.sqrt_alphas_cumprod, t, x0) * x0 + _gather(self.sqrt_one_minus_alphas_cumprod, t, x0) * noise

    def posterior_mean_variance(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor
                                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [B, d] and variance [B, 1] of q(x_{t-1} | x_t, x_0). At t = 0 the mean is x0 itself."""
        mean = _gather(self.posterior_mean_coef1, t, xt) * x0 + _gather(self.posterior_mean_coef2, t, xt) * xt
        return mean, _gather(self.posterior_variance, t, xt)

    def predict_x0(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The x0 estimate implied by the denoiser's output (identity for x0-prediction)."""
        if self.prediction == "x0":
            return model_output
        abar = _gather(self.alphas_cumprod, t, xt)
        return (xt - (1.0 - abar).sqrt() * model_output) / abar.sqrt()

    def step(self, model_output: torch.Tensor, xt: torch.Tensor, t: torch.Tensor, sample: bool = False,
             generator: torch.Generator | None = None) -> torch.Tensor:
        """One reverse step x_t -> x_{t-1}: the posterior mean, plus noise when ``sample`` and t > 0."""
        mean, var = self.posterior_mean_variance(self.predict_x0(model_output, xt, t), xt, t)
        if not sample:
            return mean
        noise = torch.randn(xt.shape, generator=generator, device=xt.device, dtype=xt.dtype)
        return mean + (t > 0).to(xt.dtype).unsqueeze(-1) * var.sqrt() * noise

    def scalar_coefficients(self) -> dict[str, list[float]]:
        """The schedule as Python floats (for :meth:`step_at`; fetch once per generation, not per step)."""
        return {k: getattr(self, k).tolist() for k in ("alphas_cumprod", "posterior_mean_coef1",
                                                       "posterior_mean_coef2", "posterior_variance")}

    def step_at(self, model_output: torch.Tensor, xt: torch.Tensor, step: int, sample: bool = False,
                generator: torch.Generator | None = None, coefs: dict[str, list[float]] | None = None,
                noise: torch.Tensor | None = None) -> torch.Tensor:
        """:meth:`step` for one timestep shared by the whole batch (scalar coefficients: no gathers); ``noise``
        [B, d], when given, is the posterior noise (else drawn from ``generator``)."""
        c = coefs or self.scalar_coefficients()
        if self.prediction == "x0":
            x0 = model_output
        else:
            abar = c["alphas_cumprod"][step]
            x0 = (xt - math.sqrt(1.0 - abar) * model_output) / math.sqrt(abar)
        mean = c["posterior_mean_coef1"][step] * x0 + c["posterior_mean_coef2"][step] * xt
        if not sample or step == 0:
            return mean
        if noise is None:
            noise = torch.randn(xt.shape, generator=generator, device=xt.device, dtype=xt.dtype)
        return mean + math.sqrt(c["posterior_variance"][step]) * noise

    def noise_to_signal(self, t: int | None = None) -> float:
        """``sqrt(1 - abar_t) / sqrt(abar_t)`` at step t (default T - 1): the std of the injected noise per unit of
        signal (for unit-variance embeddings it is the noise-to-signal norm ratio)."""
        k = self.steps - 1 if t is None else t
        return float(self.sqrt_one_minus_alphas_cumprod[k] / self.sqrt_alphas_cumprod[k])
