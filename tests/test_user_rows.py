"""The trained user-row models (DiffRec, Mult-VAE): Mult-VAE's loss against its formula, the KL annealing, scoring
at the posterior mean, fold-in equal to scoring a known user, and bad hyper-parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddrm.baselines import MultVAE, build
from ddrm.baselines.multvae import kl_standard_normal
from ddrm.data.synthetic import SyntheticConfig, make_synthetic
from ddrm.errors import ConfigError
from ddrm.evaluation import evaluate


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(SyntheticConfig(n_users=80, n_items=40, mean_items=8, seed=2))


def test_kl_to_the_standard_normal_is_the_closed_form():
    mu = torch.tensor([[0.0, 0.0], [1.0, -2.0]])
    log2 = float(np.log(2.0))
    logvar = torch.tensor([[0.0, 0.0], [0.0, log2]])
    # row 0: N(0, I) itself; row 1: 1/2 (1 + 1 - 1 - 0) + 1/2 (2 + 4 - 1 - log 2)
    expected = torch.tensor([0.0, 0.5 + 0.5 * (5.0 - log2)])
    assert torch.allclose(kl_standard_normal(mu, logvar), expected)


def test_multvae_loss_is_the_annealed_negative_elbo(tiny):
    m = MultVAE(dims=(16,), latent=4, dropout=0.0, anneal_cap=0.3, anneal_steps=10, epochs=0, quiet=True).fit(tiny)
    module = m.module_.train(True)
    users = torch.arange(6)
    x = m.rows(users.numpy())
    module.on_step(4)
    assert module.beta == pytest.approx(0.3)  # min(cap 0.3, 4 / 10)
    state = module.generator.get_state()
    out = module.loss(users)
    module.generator.set_state(state)  # the same reparameterisation noise, by hand
    h = F.normalize(x, dim=-1)
    for k, layer in enumerate(module.encoder):
        h = layer(h) if k == len(module.encoder) - 1 else torch.tanh(layer(h))
    mu, logvar = h[:, :4], h[:, 4:]
    z = mu + torch.exp(0.5 * logvar) * torch.randn(mu.shape, generator=module.generator)
    logits = module.decode(z)
    nll = -(x * torch.log(torch.softmax(logits, 1))).sum(1).mean()
    kl = (0.5 * (logvar.exp() + mu ** 2 - 1 - logvar).sum(1)).mean()
    assert float(out["nll"].detach()) == pytest.approx(float(nll.detach()), rel=1e-5)
    assert float(out["loss"].detach()) == pytest.approx(float((nll + 0.3 * kl).detach()), rel=1e-5)


def test_the_kl_weight_anneals_linearly_to_its_cap(tiny):
    m = MultVAE(dims=(8,), latent=2, anneal_cap=0.2, anneal_steps=100, epochs=0, quiet=True).fit(tiny)
    betas = []
    for step in (0, 10, 20, 50, 1000):
        m.module_.on_step(step)
        betas.append(m.module_.beta)
    assert betas == pytest.approx([0.0, 0.1, 0.2, 0.2, 0.2])
    constant = MultVAE(dims=(8,), latent=2, anneal_cap=0.7, anneal_steps=0, epochs=0, quiet=True).fit(tiny)
    constant.module_.on_step(3)
    assert constant.module_.beta == 0.7


def test_multvae_scores_are_the_logits_at_the_posterior_mean(tiny):
    m = MultVAE(dims=(16,), latent=4, epochs=2, eval_every=1, batch_size=32, quiet=True).fit(tiny)
    users = torch.arange(5)
    x = m.rows(users.numpy())
    mu, _ = m.module_.encode(x)
    assert not m.module_.training
    assert torch.allclose(m.score(users), m.module_.decode(mu))
    assert torch.equal(m.score(users), m.score(users))  # no dropout, no sampling when scoring


@pytest.mark.parametrize("name, params", [("multvae", {"dims": (16,), "latent": 4}),
                                          ("diffrec", {"dims": (16,), "steps": 5, "noise_steps": 2})])
def test_fold_in_of_a_users_history_equals_scoring_the_user(tiny, name, params):
    """A user-row model sees a user only through their train row, so the row given as a new user's history scores
    the same (DiffRec's inference noise is keyed by the history, so the same history gets the same noise)."""
    m = build(name, epochs=1, eval_every=1, batch_size=32, quiet=True, **params).fit(tiny)
    users = np.array([0, 3, 4])
    histories = [tiny.train[u].indices for u in users]
    folded = m.score_history(histories)
    if name == "multvae":
        assert torch.allclose(folded, m.score(torch.from_numpy(users)), atol=1e-6)
    else:  # the same rows; only the key of the noise differs from the known users'
        assert torch.equal(folded, m.score_history([h[::-1].copy() for h in histories]))
        assert folded.shape == (3, tiny.n_items) and torch.isfinite(folded).all()


def test_multvae_learns_the_checkerboard(checkerboard):
    m = MultVAE(dims=(32,), latent=4, dropout=0.0, anneal_steps=0, anneal_cap=0.0, lr=0.01, epochs=60,
                eval_every=60, batch_size=8, quiet=True).fit(checkerboard)
    s = m.score(torch.arange(8))
    even = torch.arange(12) % 2 == 0
    own = torch.where((torch.arange(8) % 2 == 0)[:, None], even[None, :], ~even[None, :])
    assert (s[own].reshape(8, 6).min(1).values > s[~own].reshape(8, 6).max(1).values).all()
    assert evaluate(m, checkerboard, "test", ks=(2,)).metrics["recall@2"] == 1.0  # the test item is an unseen own one


@pytest.mark.parametrize("params, message", [({"latent": 0}, "latent and dims must be positive"),
                                             ({"dims": (8, 0)}, "latent and dims must be positive"),
                                             ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
                                             ({"anneal_steps": -1}, "anneal_cap and anneal_steps must be >= 0"),
                                             ({"max_items": 5}, "dense in n_items")])
def test_bad_multvae_parameters_are_one_sentence(tiny, params, message):
    with pytest.raises(ConfigError, match=message):
        MultVAE(epochs=1, quiet=True, **params).fit(tiny)


def test_ddrm_baseline_multvae_end_to_end_and_served_for_a_new_user(capsys, tmp_path, monkeypatch):
    import json

    from ddrm.cli import main
    from ddrm.serve import RecommendationService

    out = tmp_path / "vae"
    args = ["baseline", "multvae", "--data", "synthetic", "--set", "data.synthetic.n_users=120", "--set",
            "data.synthetic.n_items=60", "--set", "data.synthetic.mean_items=10", "--set", "epochs=3", "--set", "eval_every=1", "--set", "dims=[16]", "--set",
            "latent=4", "--output", str(out), "--json", "--quiet"]
    monkeypatch.setenv("DDRM_PROGRESS", "1")  # bars forced on: --quiet must still silence the training's bar
    assert main(args) == 0
    out_err = capsys.readouterr()
    fitted = json.loads(out_err.out)
    assert fitted["params"]["quiet"] is True and "multvae epoch" not in out_err.err
    assert 0 < fitted["metrics"]["test"]["recall@20"] <= 1 and fitted["params"]["latent"] == 4
    assert main(["evaluate", "--checkpoint", str(out / "baseline.pt"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == fitted["metrics"]  # the saved model is the fitted one
    assert main(["noise", "--checkpoint", str(out / "baseline.pt"), "--top", "3", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["score"] == "multvae score"
    service = RecommendationService(out / "baseline.pt")
    assert service.health()["backend"] == "multvae"
    folded = service.recommend_history(["1", "2", "3"], 5)["items"]
    assert len(folded) == 5 and not {"1", "2", "3"} & {i["item_id"] for i in folded}
    assert main(["baseline", "multvae", "--data", "synthetic", "--set", "dropout=1.5", "--quiet"]) == 2
    assert "dropout must be in [0, 1)" in capsys.readouterr().err
