from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from ddrm.backends import build
from ddrm.data import SyntheticConfig, make_synthetic
from ddrm.errors import ConfigError
from ddrm.evaluation import evaluate
from ddrm.model import DDRM, DDRMConfig
from ddrm.training import TrainConfig


@pytest.fixture(scope="module")
def setup():
    data = make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10, seed=2))
    backend = build("lightgcn", layers=2, epochs=10, eval_every=5, lr=0.02, batch_size=256, quiet=True).fit(data)
    return data, backend


def small_ddrm(backend, **kw):
    return DDRM(backend, train=TrainConfig(epochs=2, eval_every=1, batch_size=256), quiet=True,
                dims=(16,), steps=5, **kw)


def test_loss_matches_method_formula(setup):
    data, backend = setup
    m = small_ddrm(backend, alpha=0.3, beta=0.7, noise_scale=0.1)
    m.fit(data)
    mod = m.module_.train(True)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    state = mod.generator.get_state()
    terms = mod.loss(users, pos, neg)
    # replay the same randomness by hand
    mod.generator.set_state(state)
    u_all, i_all = backend.user_embeddings(), backend.item_embeddings()
    e_u, e_i, e_j = u_all[users], i_all[pos], i_all[neg]
    t = torch.randint(0, 5, (3,), generator=mod.generator)
    xu = mod.user_denoiser(mod.diffusion.q_sample(e_u, t, generator=mod.generator), e_i, t, mod.generator)
    xi = mod.item_denoiser(mod.diffusion.q_sample(e_i, t, generator=mod.generator), e_u, t, mod.generator)
    s_pos, s_neg = (xu * xi).sum(1), (xu * e_j).sum(1)
    bpr = -F.logsigmoid(s_pos - s_neg)
    rec = (((e_u - xu) ** 2).mean(1) + ((e_i - xi) ** 2).mean(1)) / 2
    w = torch.sigmoid(s_pos) ** 0.7
    expected = (w * (0.7 * bpr + 0.3 * rec)).mean()
    torch.testing.assert_close(terms["loss"], expected)
    assert backend.module_.user.grad is None  # the backend's own training left no gradients behind
    terms["loss"].backward()
    assert backend.module_.user.grad is None  # frozen backend gets no gradient


def test_training_improves_and_recommends(setup):
    data, backend = setup
    m = DDRM(backend, train=TrainConfig(epochs=6, eval_every=2, batch_size=128, lr=3e-3), quiet=True, dims=(32,),
             steps=5).fit(data)
    assert m.result_.best_epoch in (2, 4, 6)
    losses = [h["loss"] for h in m.result_.history]
    assert losses[-1] < losses[0]
    r = evaluate(m, data, "test", (10,)).metrics["recall@10"]
    unseen = data.n_items - data.seen("test").sum(1).mean()
    assert r > 1.3 * 10 / unseen  # a random ranking gets about 10 / unseen
    untrained = DDRM(backend, train=TrainConfig(epochs=0), quiet=True, dims=(32,), steps=5).fit(data)
    assert r > evaluate(untrained, data, "test", (10,)).metrics["recall@10"]  # training is what lifts it
    items, scores = m.recommend(torch.arange(4), k=5)
    seen = data.train.toarray()
    assert not seen[torch.arange(4)[:, None].numpy(), items.numpy()].any()


def test_ablation_switches(setup):
    data, backend = setup
    m = small_ddrm(backend, item_denoiser=False).fit(data)
    u = torch.arange(5)
    torch.testing.assert_close(m.generate(u), m.module_.history_average(u, backend.item_embeddings()))
    for start in ("noise", "user"):
        g = small_ddrm(backend, start=start).fit(data).generate(u)
        assert g.shape == (5, backend.item_embeddings().shape[1]) and torch.isfinite(g).all()
    m = small_ddrm(backend, user_denoiser=False, reconstruction=False, beta=0.0).fit(data)
    terms = m.module_.train(True).loss(torch.tensor([0]), torch.tensor([1]), torch.tensor([2]))
    assert terms["weight"].item() == 1.0


def test_joint_fine_tuning_trains_a_copy_and_never_the_backend_given(setup, tmp_path):
    data, backend = setup
    fresh = build("lightgcn", layers=2, epochs=2, eval_every=2, lr=0.02, batch_size=256, quiet=True).fit(data)
    before = [t.detach().clone() for t in (fresh.module_.user, fresh.module_.item)]
    scores = fresh.score(torch.arange(10))
    joint = small_ddrm(fresh, freeze_backend=False, backend_lr=1e-2).fit(data)
    assert torch.equal(before[0], fresh.module_.user) and torch.equal(before[1], fresh.module_.item)
    assert torch.equal(fresh.score(torch.arange(10)), scores)
    assert joint.module_.backend is not fresh.module_
    assert not torch.equal(before[0], joint.module_.backend.user.detach())  # the copy was fine-tuned
    joint.save(tmp_path / "j.pt", data)
    again = DDRM.load(tmp_path / "j.pt", data)
    torch.testing.assert_close(again.module_.backend.user, joint.module_.backend.user)
    torch.testing.assert_close(again.score(torch.arange(10)), joint.score(torch.arange(10)))
    frozen = small_ddrm(fresh).fit(data)
    assert frozen.module_.backend is fresh.module_  # read, not copied, not registered
    assert not any(k.startswith("backend.") for k in frozen.module_.state_dict())
    assert all(p.requires_grad for p in fresh.module_.parameters())  # DDRM did not touch the flags either


def test_embeddings_cache_follows_the_weights_by_itself(setup):
    data, _ = setup
    b = build("lightgcn", layers=2, epochs=1, eval_every=1, lr=0.02, batch_size=256, quiet=True).fit(data)
    m = b.module_
    first = m.embeddings()
    assert m.embeddings()[0] is first[0]  # cached
    with torch.no_grad():
        m.user.mul_(2.0)  # any in-place update (an optimiser step, load_state_dict) bumps the version
    u, _ = m.embeddings()
    torch.testing.assert_close(u, m.propagated(layers=m.final_layers)[0].detach())
    assert not torch.allclose(u, first[0])
    m.load_state_dict({"user": torch.zeros_like(m.user), "item": m.item.detach().clone()})
    assert torch.equal(m.user, torch.zeros_like(m.user))
    torch.testing.assert_close(m.embeddings()[0], m.propagated(layers=m.final_layers)[0].detach())
    assert not torch.allclose(m.embeddings()[0], u)
    m.cfg = dataclasses.replace(m.cfg, infer_layers=1)  # a new depth
    torch.testing.assert_close(m.embeddings()[1], m.propagated(layers=1)[1].detach())


def test_invalid_settings(setup):
    _, backend = setup
    with pytest.raises(ConfigError, match="sampling_steps"):
        DDRM(backend, steps=10, sampling_steps=12)
    with pytest.raises(ConfigError, match="noise_min < noise_max"):
        DDRM(backend, noise_min=1e-2, noise_max=1e-3)
    with pytest.raises(ConfigError, match="unknown DDRM parameter 'stepz'; DDRM takes the keys of DDRMConfig"):
        DDRM(backend, stepz=3)
    m = DDRM(backend, steps=7, epochs=3, lr=0.02)  # training keys flat, as ddrm.backends.build takes them
    assert (m.config.steps, m.train.epochs, m.train.lr, m.train.batch_size) == (7, 3, 0.02, 2048)
    with pytest.raises(ConfigError, match="epochs"):
        DDRM(backend, epochs="many")
    assert DDRMConfig(steps=10, sampling_steps=4).sampling == 4


def test_checkpoint_roundtrip(setup, tmp_path):
    data, backend = setup
    m = small_ddrm(backend).fit(data)
    m.save(tmp_path / "ddrm.pt", data)
    again = DDRM.load(tmp_path / "ddrm.pt", data)
    u = torch.arange(6)
    torch.testing.assert_close(again.score(u), m.score(u))
    assert again.config == m.config


def test_seeded_training_is_reproducible(setup):
    data, backend = setup
    a = small_ddrm(backend).fit(data).score(torch.arange(4))
    b = small_ddrm(backend).fit(data).score(torch.arange(4))
    torch.testing.assert_close(a, b)


def test_inference_fast_path_equals_generic_forward_and_step():
    from ddrm.denoiser import MLPDenoiser
    from ddrm.diffusion import GaussianDiffusion, make_betas

    den = MLPDenoiser(8, (6, 12), time_dim=4, activation="tanh", generator=torch.Generator().manual_seed(1)).eval()
    x, c = torch.randn(5, 8), torch.randn(5, 8)
    for s in (0, 3, 9):
        fast = den.forward_prepared(x, den.condition_part(c), den.time_part(s, x))
        assert torch.allclose(fast, den(x, c, torch.full((5,), s)), atol=1e-6)
    for prediction in ("x0", "eps"):
        diff = GaussianDiffusion(make_betas("linear", 10, 1.0, 1e-4, 0.02), prediction)
        out = torch.randn(5, 8)
        for s in (0, 4, 9):
            assert torch.allclose(diff.step_at(out, x, s), diff.step(out, x, torch.full((5,), s)), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_denoiser_equals_one_linear_on_the_concatenation(activation):
    """The split first layer is the denoiser of docs/method.md (section 3): an MLP on [x_t, Linear(temb(t)), cond], values and grads."""
    from ddrm.denoiser import MLPDenoiser, timestep_embedding

    den = MLPDenoiser(8, (6, 12), time_dim=4, activation=activation, dropout=0.0,
                      generator=torch.Generator().manual_seed(3)).train()
    x, c = torch.randn(7, 8, requires_grad=True), torch.randn(7, 8, requires_grad=True)
    t = torch.tensor([0, 1, 1, 5, 9, 2, 0])
    got = den(x, c, t)
    naive = den.mlp(torch.cat([x, den.time_layer(timestep_embedding(t, 4)), c], dim=1))
    torch.testing.assert_close(got, naive, atol=1e-6, rtol=1e-5)
    g = torch.randn_like(got)
    grads = torch.autograd.grad((got * g).sum(), [x, c, *den.parameters()])
    naive_grads = torch.autograd.grad((naive * g).sum(), [x, c, *den.parameters()])
    for a, b in zip(grads, naive_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)


def test_a_users_scores_do_not_depend_on_the_batch(setup):
    """Inference noise is keyed per user (and per item set for fold-in users): the same scores whatever batch, batch
    size or evaluation split (so DDP sharding and serving agree); the noise is real: another seed changes them."""
    data, backend = setup
    m = small_ddrm(backend, noise_scale=500.0, sampling_noise=True).fit(data)  # 1 - abar_T = 0.5: loud noise
    full = m.score(torch.arange(data.n_users))
    for users in (torch.tensor([7]), torch.tensor([30, 7, 2]), torch.arange(7, 50)):
        torch.testing.assert_close(m.score(users), full[users])  # equal up to the matmul's float rounding
    a = evaluate(m, data, "test", (10,), batch_size=1).metrics
    b = evaluate(m, data, "test", (10,), batch_size=64).metrics
    assert a == pytest.approx(b, rel=1e-9)  # the same rankings (only the averaging order differs)
    other = DDRM(backend, train=TrainConfig(epochs=0), quiet=True, dims=(16,), steps=5, noise_scale=500.0)
    other.fit(data)
    other.module_.load_state_dict(m.module_.state_dict())
    other.module_.seed = m.module_.seed + 1
    assert not torch.allclose(other.score(torch.tensor([7])), full[[7]])
    h1, h2 = [3, 9, 11], [5, 6]
    one = m.score_history([h1])
    torch.testing.assert_close(m.score_history([h2, h1[::-1]])[1], one[0])
    assert not torch.allclose(m.score_history([h2])[0], one[0])


def test_score_fusion_weight_0_is_the_backend_and_selection_never_loses_on_validation(setup, tmp_path):
    data, backend = setup
    u = torch.arange(data.n_users)
    pure = small_ddrm(backend).fit(data)
    zero = small_ddrm(backend, fusion=0.0).fit(data)
    assert torch.equal(zero.score(u).topk(10).indices, backend.score(u).topk(10).indices)
    one = small_ddrm(backend, fusion=1.0).fit(data)
    torch.testing.assert_close(one.score(u), pure.score(u))
    half = small_ddrm(backend, fusion=0.5).fit(data)
    z = lambda s: (s - s.mean(1, keepdim=True)) / s.std(1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(half.score(u), 0.5 * z(backend.score(u)) + 0.5 * z(pure.score(u)))
    torch.testing.assert_close(zero.score_history([[1, 2, 3]]), backend.score_history([[1, 2, 3]]))
    chosen = small_ddrm(backend, fusion_choices=[0.0, 0.5, 1.0]).fit(data)
    valid = {w: evaluate(small_ddrm(backend, fusion=w).fit(data), data, "valid", (20,)).metrics["recall@20"]
             for w in (0.0, 0.5, 1.0)}
    assert chosen.fusion_scores_ == pytest.approx(valid)
    assert chosen.config.fusion == max(valid, key=valid.get)
    assert chosen.fusion_scores_[chosen.config.fusion] >= evaluate(backend, data, "valid", (20,)).metrics["recall@20"]
    chosen.save(tmp_path / "d.pt", data)
    again = DDRM.load(tmp_path / "d.pt", data)
    assert again.config.fusion == chosen.config.fusion
    torch.testing.assert_close(again.score(u[:5]), chosen.score(u[:5]))
    with pytest.raises(ConfigError, match="fusion"):
        DDRMConfig(fusion_choices=[1.5]).validate()


def test_start_mixture_endpoints_are_the_pure_starts_and_selection_is_on_validation(setup):
    data, backend = setup
    u = torch.arange(data.n_users)
    m = small_ddrm(backend, noise_scale=50.0).fit(data)  # the diffusion far from the identity
    state = m.module_.state_dict()

    def scores(**kw) -> torch.Tensor:
        other = small_ddrm(backend, noise_scale=50.0, **kw)
        other.fit(data)
        other.module_.load_state_dict(state)
        return other.score(u)

    hist, user = scores(start="history"), scores(start="user")
    assert not torch.allclose(hist, user)
    assert torch.equal(scores(start="mix", start_mix=0.0), hist)
    assert torch.equal(scores(start="mix", start_mix=1.0), user)
    half = scores(start="mix", start_mix=0.5)
    assert not torch.allclose(half, hist) and not torch.allclose(half, user)
    # the mixture is the lerp of the two starts, run through the same reverse process
    mod = m.module_
    u_all, i_all = backend.module_.embeddings()
    x0 = 0.5 * mod.history_average(u, i_all) + 0.5 * u_all
    torch.testing.assert_close(half, mod.reverse(x0, u_all, u) @ i_all.T)
    # a config assigned after training reaches the trained module: the endpoints score as the pure starts
    m.config = dataclasses.replace(m.config, start="mix", start_mix=1.0)
    assert torch.equal(m.score(u), user)
    m.config = dataclasses.replace(m.config, start_mix=0.0)
    assert torch.equal(m.score(u), hist)
    # near the identity (the reference noise levels) the start decides the ranking, so the choices validate apart
    chosen = small_ddrm(backend, start_mix_choices=[0.0, 0.5, 1.0]).fit(data)
    assert chosen.config.start == "mix"
    valid = {}
    for w in (0.0, 0.5, 1.0):
        chosen.config = dataclasses.replace(chosen.config, start_mix=w)
        valid[w] = evaluate(chosen, data, "valid", (20,)).metrics["recall@20"]
    assert len(set(valid.values())) > 1
    assert chosen.selection_["start_mix"] == pytest.approx(valid)
    chosen.select_inference(data)
    assert chosen.config.start_mix == max(valid, key=valid.get)


def test_with_fusion_choices_a_start_candidate_is_judged_by_its_best_fused_score(setup):
    data, backend = setup
    mixes, weights = [0.0, 0.5, 1.0], [0.0, 0.3, 0.7, 1.0]
    chosen = small_ddrm(backend, start_mix_choices=mixes, fusion_choices=weights).fit(data)
    grid = {}
    for w in mixes:
        for f in weights:
            chosen.config = dataclasses.replace(chosen.config, start="mix", start_mix=w, fusion=f)
            grid[w, f] = evaluate(chosen, data, "valid", (20,)).metrics["recall@20"]
    # each start_mix's score is its best fused validation score, computed in one pass over every weight
    assert chosen.selection_["start_mix"] == pytest.approx({w: max(grid[w, f] for f in weights) for w in mixes})
    best_mix = max(mixes, key=lambda w: max(grid[w, f] for f in weights))
    assert chosen.selection_["fusion"] == pytest.approx({f: grid[best_mix, f] for f in weights})
    chosen.config = dataclasses.replace(chosen.config, start_mix=0.0, fusion=None)
    chosen.select_inference(data)
    assert chosen.config.start_mix == best_mix
    assert chosen.config.fusion == max(weights, key=lambda f: grid[best_mix, f])
    # with one start option the pair chosen is the best of the whole grid (judging the start alone can miss it)
    assert grid[chosen.config.start_mix, chosen.config.fusion] == pytest.approx(max(grid.values()))


def test_start_step_decouples_the_inference_noise_level_from_T(setup):
    data, backend = setup
    u = torch.arange(data.n_users)
    m = small_ddrm(backend, noise_scale=50.0).fit(data)
    state = m.module_.state_dict()

    def with_step(k: int) -> DDRM:
        other = small_ddrm(backend, noise_scale=50.0, start_step=k)
        other.fit(data)
        other.module_.load_state_dict(state)
        return other

    torch.testing.assert_close(with_step(5).score(u), m.score(u))  # k = T: the paper's inference
    u_all, i_all = backend.module_.embeddings()
    start = m.module_.history_average(u, i_all)
    torch.testing.assert_close(with_step(0).score(u), start @ i_all.T)  # k = 0: the start point itself
    # k = 2: noise to step 1 (sqrt(abar_1) x0 + sqrt(1 - abar_1) eps), then the reverse steps 1 and 0 only
    two = with_step(2)
    mod, diff = two.module_, two.module_.diffusion
    eps = mod._noise(u, 5, start, None)
    x = diff.sqrt_alphas_cumprod[1] * start + diff.sqrt_one_minus_alphas_cumprod[1] * eps
    den = mod.item_denoiser
    for step in (1, 0):
        out = den(x, u_all, torch.full((len(u),), step))
        x = diff.step_at(out, x, step, False, coefs=diff.scalar_coefficients())
    torch.testing.assert_close(two.score(u), x @ i_all.T, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(two.score(u), m.score(u))
    picked = small_ddrm(backend, noise_scale=50.0, start_step_choices=[0, 2, 5]).fit(data)
    assert set(picked.selection_["start_step"]) == {0, 2, 5}
    assert len(set(picked.selection_["start_step"].values())) > 1  # the choices were really applied
    assert picked.config.start_step == max(picked.selection_["start_step"], key=picked.selection_["start_step"].get)
    for bad in ({"start_step": 6}, {"start_step": 2, "sampling_steps": 3}, {"start_step": 2, "start": "noise"},
                {"start_step_choices": [1.5]}, {"start_mix": 2.0}, {"guidance": "item"}):
        with pytest.raises(ConfigError):
            DDRMConfig(steps=5, **bad).validate()


def test_guidance_on_both_trains_an_item_denoiser_on_user_and_history(setup, tmp_path):
    data, backend = setup
    u = torch.arange(data.n_users)
    both = small_ddrm(backend, guidance="both").fit(data)
    d = backend.module_.cfg.dim
    assert both.module_.item_denoiser.mlp[0].in_features == 3 * d + both.config.time_dim
    assert both.module_.user_denoiser.mlp[0].in_features == 2 * d + both.config.time_dim
    u_all, i_all = backend.module_.embeddings()
    cond = both.module_.guidance(u_all[u], u, i_all)
    torch.testing.assert_close(cond, torch.cat([u_all, both.module_.history_average(u, i_all)], dim=1))
    user = small_ddrm(backend).fit(data)
    assert not torch.allclose(both.score(u), user.score(u))
    assert both.score_history([[1, 2, 3]]).shape == (1, data.n_items)
    assert both.noise_scores(data).shape == (data.train.nnz,)
    both.save(tmp_path / "b.pt", data)
    torch.testing.assert_close(DDRM.load(tmp_path / "b.pt", data).score(u[:4]), both.score(u[:4]))


def test_bf16_auto_probes_without_disturbing_training(setup, monkeypatch):
    import ddrm.precision as precision

    data, backend = setup
    for margin, expect in ((0.0, False), (1e9, True)):  # never / always clearly faster
        monkeypatch.setattr(precision, "MARGIN", margin)
        auto = small_ddrm(backend, bf16="auto").fit(data)
        assert auto.config.bf16 is expect and auto.module_.cfg.bf16 is expect
        assert set(auto.bf16_probe_) == {"fp32_ms", "bf16_ms", "bf16"} and auto.bf16_probe_["bf16"] is expect
        fixed = small_ddrm(backend, bf16=expect).fit(data)
        assert fixed.bf16_probe_ is None
        for k, v in fixed.module_.state_dict().items():  # the probe left the RNG streams and weights untouched
            assert torch.equal(v, auto.module_.state_dict()[k]), k
    with pytest.raises(ConfigError, match="bf16"):
        DDRMConfig(bf16="yes").validate()


def test_probe_bf16_prefers_the_clearly_faster_step():
    import time

    from ddrm.precision import probe_bf16

    assert probe_bf16(lambda bf16: time.sleep(0.001 if bf16 else 0.004), reps=2, warmup=0)[0] is True
    assert probe_bf16(lambda bf16: time.sleep(0.004 if bf16 else 0.001), reps=2, warmup=0)[0] is False
