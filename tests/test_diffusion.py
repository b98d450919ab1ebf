from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ddrm.denoiser import MLPDenoiser, timestep_embedding
from ddrm.diffusion import GaussianDiffusion, make_betas
from ddrm.errors import ConfigError


def test_linear_and_linear_var_schedules():
    b = make_betas("linear", 5, 0.1, 1e-3, 1e-2)
    np.testing.assert_allclose(b, np.linspace(1e-4, 1e-3, 5))
    v = make_betas("linear-var", 5, 0.1, 1e-3, 1e-2)
    variances = np.linspace(1e-4, 1e-3, 5)
    abar = np.cumprod(1 - v)
    np.testing.assert_allclose(1 - abar, variances, rtol=1e-10)  # the variances follow the linspace
    fixed = make_betas("linear-var", 5, 0.1, 1e-3, 1e-2, first_beta=1e-5)
    assert fixed[0] == 1e-5 and np.array_equal(fixed[1:], v[1:])


def test_cosine_and_binomial():
    c = make_betas("cosine", 10)
    f = [math.cos((t / 10 + 0.008) / 1.008 * math.pi / 2) ** 2 for t in range(11)]
    np.testing.assert_allclose(c, [min(1 - f[k + 1] / f[k], 0.999) for k in range(10)])
    np.testing.assert_allclose(make_betas("binomial", 4), [1 / 5, 1 / 4, 1 / 3, 1 / 2])


@pytest.mark.parametrize("args", [("linear", 5, 1.0, 1e-2, 1e-3), ("linear", 0, 1.0, 1e-4, 1e-3),
                                  ("linear-var", 5, 1.0, 0.0, 1e-3), ("linear", 5, 100.0, 1e-3, 1e-2),
                                  ("quadratic", 5, 1.0, 1e-4, 1e-3)])
def test_invalid_schedules_are_rejected(args):
    with pytest.raises(ConfigError):
        make_betas(*args)


def test_q_sample_posterior_and_step_match_formulas():
    betas = make_betas("linear", 6, 1.0, 0.01, 0.2)
    d = GaussianDiffusion(betas)
    alphas = 1 - betas
    abar = np.cumprod(alphas)
    x0, noise = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 4, dtype=torch.float64)
    t = torch.tensor([0, 2, 5])
    xt = d.q_sample(x0, t, noise)
    for k, tk in enumerate(t.tolist()):
        expected = math.sqrt(abar[tk]) * x0[k] + math.sqrt(1 - abar[tk]) * noise[k]
        torch.testing.assert_close(xt[k], expected)
    mean, var = d.posterior_mean_variance(x0, xt, t)
    for k, tk in enumerate(t.tolist()):
        prev = abar[tk - 1] if tk > 0 else 1.0
        c1 = betas[tk] * math.sqrt(prev) / (1 - abar[tk])
        c2 = (1 - prev) * math.sqrt(alphas[tk]) / (1 - abar[tk])
        torch.testing.assert_close(mean[k], c1 * x0[k] + c2 * xt[k])
        assert var[k].item() == pytest.approx(betas[tk] * (1 - prev) / (1 - abar[tk]))
    torch.testing.assert_close(mean[0], x0[0])  # at t = 0 the posterior mean is x0 itself
    torch.testing.assert_close(d.step(x0, xt, t), mean)
    eps_model = GaussianDiffusion(betas, prediction="eps")
    torch.testing.assert_close(eps_model.predict_x0(noise, xt, t), x0)
    assert d.noise_to_signal() == pytest.approx(math.sqrt(1 - abar[-1]) / math.sqrt(abar[-1]))


def test_buffers_follow_the_module():
    d = GaussianDiffusion(make_betas("linear-var", 4, 1e-2, 1e-4, 1e-3))
    assert set(d.state_dict()) >= {"betas", "alphas_cumprod", "posterior_mean_coef1"}
    assert d.to(torch.float64).betas.dtype == torch.float64


def test_reference_noise_is_tiny():
    d = GaussianDiffusion(make_betas("linear-var", 20, 1e-4, 1e-4, 1e-3, first_beta=1e-5))
    assert 1e-5 < 1 - d.alphas_cumprod[-1].item() < 2e-5  # docs/method.md, section 2: the reference noise level


def test_timestep_embedding_and_denoiser_shapes():
    t = torch.tensor([0, 3, 7])
    e = timestep_embedding(t, 10)
    assert e.shape == (3, 10)
    torch.testing.assert_close(e[0], torch.cat([torch.ones(5), torch.zeros(5)]))
    assert timestep_embedding(t, 7).shape == (3, 7)
    f = MLPDenoiser(8, dims=(6, 12), time_dim=4, activation="relu")
    sizes = [(m.in_features, m.out_features) for m in f.mlp if isinstance(m, torch.nn.Linear)]
    assert sizes == [(20, 12), (12, 6), (6, 12), (12, 8)]
    assert f(torch.randn(5, 8), torch.randn(5, 8), torch.randint(0, 4, (5,))).shape == (5, 8)
    with pytest.raises(ConfigError):
        MLPDenoiser(8, activation="gelu")


def test_dropout_only_in_training_and_seeded():
    f = MLPDenoiser(4, dims=(3,), time_dim=2, dropout=0.5)
    x, c, t = torch.randn(6, 4), torch.randn(6, 4), torch.zeros(6, dtype=torch.long)
    f.eval()
    torch.testing.assert_close(f(x, c, t), f(x, c, t))
    f.train()
    a = f(x, c, t, torch.Generator().manual_seed(1))
    b = f(x, c, t, torch.Generator().manual_seed(1))
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a, f(x, c, t, torch.Generator().manual_seed(2)))  # another mask
    assert not torch.allclose(a, f.eval()(x, c, t))  # training output is not the inference output
    g = MLPDenoiser(4, dims=(3,), time_dim=2, dropout=0.0)
    torch.testing.assert_close(g.train()(x, c, t, torch.Generator().manual_seed(1)), g.eval()(x, c, t))


def test_keyed_normal_is_standard_normal_and_depends_on_the_key_only():
    from ddrm.diffusion import keyed_normal, mix32

    z = keyed_normal(torch.arange(20000), 16, salt=7, dtype=torch.float64)
    assert z.shape == (20000, 16)
    assert abs(z.mean().item()) < 0.01 and abs(z.std().item() - 1) < 0.01
    assert abs(((z > 1.0).double().mean() - 0.158655).item()) < 0.005  # a normal tail, not just the moments
    corr = torch.corrcoef(z[:, :4].T)
    assert (corr - torch.eye(4)).abs().max() < 0.03  # columns independent
    sub = keyed_normal(torch.tensor([19999, 5, 5]), 16, salt=7, dtype=torch.float64)
    assert torch.equal(sub[0], z[19999]) and torch.equal(sub[1], z[5]) and torch.equal(sub[2], z[5])
    assert not torch.allclose(keyed_normal(torch.tensor([5]), 16, salt=8)[0], z[5].float())
    x = torch.arange(0, 2**32, 2**20 + 7, dtype=torch.int64)
    assert mix32(x).unique().numel() == x.numel() and int(mix32(x).max()) < 2**32  # a bijection on 32 bits
