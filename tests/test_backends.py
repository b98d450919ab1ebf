from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddrm.backends import Backend, build, normalized_adjacency, propagate
from ddrm.backends.sgl import info_nce
from ddrm.cli import main
from ddrm.config.backbones import BackendConfig
from ddrm.data import SyntheticConfig, load_dataset, make_synthetic
from ddrm.errors import CheckpointError, ConfigError
from ddrm.evaluation import evaluate

from .conftest import require_shared


def test_normalized_adjacency_matches_formula(random_data):
    r = random_data.train.toarray()
    n_u, n_i = r.shape
    a = np.block([[np.zeros((n_u, n_u)), r], [r.T, np.zeros((n_i, n_i))]])
    d = a.sum(1)
    inv = np.where(d > 0, d, 1) ** -0.5 * (d > 0)
    expected = inv[:, None] * a * inv[None, :]
    got = normalized_adjacency(random_data.train).to_dense().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)
    np.testing.assert_allclose(got, got.T)


def test_propagation_is_layer_mean_and_gradient_is_exact(random_data):
    adj = normalized_adjacency(random_data.train)
    dense = adj.to_dense()
    u = torch.randn(random_data.n_users, 4, dtype=torch.float32, requires_grad=True)
    i = torch.randn(random_data.n_items, 4, dtype=torch.float32, requires_grad=True)
    pu, pi = propagate(u, i, adj, 2)
    e = torch.cat([u, i])
    ref = (e + dense @ e + dense @ (dense @ e)) / 3
    torch.testing.assert_close(torch.cat([pu, pi]), ref, atol=1e-5, rtol=1e-5)
    g = torch.randn_like(ref)
    (torch.cat([pu, pi]) * g).sum().backward()
    grad_fast = u.grad.clone()
    u.grad = None
    (ref * g).sum().backward()
    torch.testing.assert_close(grad_fast, u.grad, atol=1e-5, rtol=1e-5)
    same = propagate(u, i, adj, 0)
    assert same[0] is u


def test_normalized_sum_propagation_matches_the_reference_recipe(random_data):
    adj = normalized_adjacency(random_data.train)
    dense = adj.to_dense().numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    u, i = rng.normal(size=(random_data.n_users, 4)), rng.normal(size=(random_data.n_items, 4))
    pu, pi = propagate(torch.tensor(u, dtype=torch.float32), torch.tensor(i, dtype=torch.float32), adj, 3,
                       "normalized_sum")
    e = np.concatenate([u, i])
    total, layer = e.copy(), e
    for _ in range(3):  # E_k = rownorm(A E_{k-1}); rows of zeros (isolated nodes) stay zero
        layer = dense @ layer
        norms = np.linalg.norm(layer, axis=1, keepdims=True)
        layer = layer / np.maximum(norms, 1e-12)
        total += layer
    np.testing.assert_allclose(torch.cat([pu, pi]).numpy(), total, atol=1e-5)
    with pytest.raises(ValueError, match="layer combination"):
        propagate(torch.tensor(u), torch.tensor(i), adj, 1, "max")
    with pytest.raises(ConfigError, match="layer_combine"):
        BackendConfig(layer_combine="max").validate()  # type: ignore[arg-type]


def test_info_nce_matches_naive():
    a, b = torch.randn(5, 3), torch.randn(5, 3)
    t = 0.5
    an, bn = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    naive = np.mean([-np.log(np.exp(float(an[k] @ bn[k]) / t) / np.exp((an[k] @ bn.T).numpy() / t).sum())
                     for k in range(5)])
    assert info_nce(a, b, t).item() == pytest.approx(naive, rel=1e-5)


@pytest.fixture(scope="module")
def small():
    return make_synthetic(SyntheticConfig(n_users=150, n_items=80, mean_items=12, noise_ratio=0.0, seed=3))


@pytest.mark.parametrize("name,extra", [("mf", {"lr": 0.02}), ("lightgcn", {"lr": 0.02, "layers": 2}),
                                        ("sgl", {"lr": 0.02, "layers": 2})])
def test_backends_learn_better_than_random(small, name, extra):
    b = build(name, epochs=15, eval_every=5, batch_size=256, seed=0, quiet=True, **extra).fit(small)
    r = evaluate(b, small, "test", (10,)).metrics["recall@10"]
    assert r > 2.5 * 10 / small.n_items, r  # random ranking gets ~ 10 / n_items
    assert b.user_embeddings().shape == (small.n_users, 64) and b.item_embeddings().shape == (small.n_items, 64)
    assert b.result_.best_epoch in (5, 10, 15)


def test_training_is_seeded(small):
    a = build("mf", epochs=3, eval_every=3, batch_size=256, seed=1, quiet=True).fit(small)
    b = build("mf", epochs=3, eval_every=3, batch_size=256, seed=1, quiet=True).fit(small)
    c = build("mf", epochs=3, eval_every=3, batch_size=256, seed=2, quiet=True).fit(small)
    assert torch.equal(a.user_embeddings(), b.user_embeddings())
    assert not torch.equal(a.user_embeddings(), c.user_embeddings())


def test_import_formats_and_checkpoint_roundtrip(small, tmp_path):
    u, i = torch.randn(small.n_users, 8), torch.randn(small.n_items, 8)
    torch.save({"embedding_user.weight": u, "embedding_item.weight": i}, tmp_path / "sd.pt")
    np.savez(tmp_path / "emb.npz", users=u.numpy(), items=i.numpy())
    np.save(tmp_path / "u.npy", u.numpy())
    np.save(tmp_path / "i.npy", i.numpy())
    variants = [{"path": str(tmp_path / "sd.pt")}, {"path": str(tmp_path / "emb.npz")},
                {"user_path": str(tmp_path / "u.npy"), "item_path": str(tmp_path / "i.npy")}]
    for v in variants:
        b = build("import", layers=1, epochs=0, **v).fit(small)
        pu, pi = propagate(u, i, normalized_adjacency(small.train), 1)
        torch.testing.assert_close(b.user_embeddings(), pu)
        torch.testing.assert_close(b.score(torch.tensor([3])), pu[3:4] @ pi.T)
    b.save(tmp_path / "b.pt", small)
    again = Backend.load(tmp_path / "b.pt", small)
    torch.testing.assert_close(again.score(torch.arange(5)), b.score(torch.arange(5)))
    other = make_synthetic(SyntheticConfig(n_users=100, n_items=80, mean_items=12, seed=3))
    with pytest.raises(CheckpointError, match="users x"):
        Backend.load(tmp_path / "b.pt", other)
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "b.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        Backend.load(tmp_path / "trunc.pt", small)
    torch.save({"x": torch.zeros(3, 8)}, tmp_path / "bad.pt")
    with pytest.raises(ConfigError, match="user_key"):
        build("import", path=str(tmp_path / "bad.pt"), epochs=0).fit(small)


def test_cli_pretrain_then_evaluate(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data:\n  name: synthetic\n  synthetic: {n_users: 120, n_items: 60, mean_items: 10}\n"
                   "backend: {name: lightgcn, layers: 2}\ntrain: {epochs: 4, eval_every: 2, batch_size: 512, lr: 0.01}\n")
    out = tmp_path / "run"
    code = main(["pretrain", "--config", str(cfg), "--output", str(out), "--set", "eval.ks=[10,20]", "--json",
                 "--quiet", "--seed", "1"])
    payload = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["backend.pt", "config.yaml", "metrics.json", "run.log"]
    assert payload["seed"] == 1 and payload["best_epoch"] in (2, 4)
    code = main(["evaluate", "--checkpoint", str(out / "backend.pt"), "--json", "--quiet"])
    again = json.loads(capsys.readouterr().out)
    assert code == 0
    assert again["metrics"]["test"]["recall@20"] == pytest.approx(payload["metrics"]["test"]["recall@20"])
    code = main(["pretrain", "--config", str(cfg), "--set", "backend.nme=mf", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "backend.nme" in err


def test_reference_lightgcn_import_cross_check():
    root = require_shared("data")
    ckpt = require_shared("reference", "ddrm-official-ml-1m", "lightgcn.pt")
    data = load_dataset("ml-1m_noisy", root=root)
    b = build("import", path=str(ckpt), layers=4, epochs=0).fit(data)
    r = evaluate(b, data, "test", (20,)).metrics
    assert r["recall@20"] == pytest.approx(0.1267, abs=0.001)


def test_fit_ends_on_the_best_validation_state(small):
    """Scores after fit must come from the restored best weights, not from a stale cache of the last epoch."""
    b = build("lightgcn", layers=2, epochs=12, eval_every=2, patience=10, lr=0.05, batch_size=128, seed=0,
              quiet=True).fit(small)
    valid = evaluate(b, small, "valid", (20,)).metrics["recall@20"]
    assert valid == pytest.approx(b.result_.best_score)
    u, i = propagate(b.module_.user.detach(), b.module_.item.detach(), b.module_.adj, 2)
    torch.testing.assert_close(b.user_embeddings(), u)


def test_inference_depth_is_selected_on_validation_and_saved(small, tmp_path):
    """infer_layers_choices: every depth is scored on validation, the best becomes infer_layers, the final
    embeddings use it (training depth unchanged), and a saved checkpoint scores the same after loading."""
    b = build("lightgcn", layers=1, infer_layers_choices=[0, 1, 3], epochs=4, eval_every=2, lr=0.02, batch_size=256,
              seed=0, quiet=True).fit(small)
    ego_u, ego_i = b.module_.user.detach(), b.module_.item.detach()
    expected = {}
    for depth in (0, 1, 3):
        pu, pi = propagate(ego_u, ego_i, b.module_.adj, depth)
        scores = pu @ pi.T
        seen = torch.from_numpy(small.seen("valid").toarray()).bool()
        scores[seen] = -torch.inf
        top = scores.topk(20, dim=1).indices
        truth = torch.from_numpy(small.split("valid").toarray()).bool()
        n_truth = truth.sum(1)
        hits = torch.gather(truth, 1, top).sum(1)
        has = n_truth > 0
        expected[depth] = float((hits[has] / n_truth[has]).mean())
    assert b.depth_scores_ == pytest.approx(expected, abs=1e-6)
    best = max(expected, key=lambda k: expected[k])
    assert b.config.infer_layers == best and b.config.layers == 1
    pu, _ = propagate(ego_u, ego_i, b.module_.adj, best)
    torch.testing.assert_close(b.user_embeddings(), pu)
    b.save(tmp_path / "b.pt", small)
    loaded = Backend.load(tmp_path / "b.pt", small)
    torch.testing.assert_close(loaded.score(torch.arange(7)), b.score(torch.arange(7)))
    assert loaded.depth_scores_ == b.depth_scores_  # a reloaded backend still reports what the choice rested on
    with pytest.raises(ConfigError, match="infer_layers"):
        build("lightgcn", infer_layers=-1)


def test_ease_factors_are_a_low_rank_symmetric_ease(small, tmp_path):
    from ddrm.baselines.ease import EASE

    dim, reg, norm = 12, 20.0, 2.5
    b = build("ease-factors", dim=dim, ease_reg=reg, ease_norm=norm, epochs=0).fit(small)
    users, items = b.user_embeddings().double(), b.item_embeddings().double()
    assert items.shape == (small.n_items, dim) and items.norm(dim=1).mean().item() == pytest.approx(norm, rel=1e-5)
    # naive: EASE's B, its symmetric part, the rank-dim truncation of the positive spectrum
    B = EASE(reg=reg).fit(small).weights_.double()
    lam, vec = torch.linalg.eigh((B + B.T) / 2)
    top = torch.argsort(lam, descending=True)[:dim]
    s_d = vec[:, top] @ torch.diag(lam[top].clamp(min=0)) @ vec[:, top].T
    scale2 = (items @ items.T)[0, 0] / s_d[0, 0]
    torch.testing.assert_close(items @ items.T, scale2 * s_d, rtol=1e-4, atol=1e-5)
    x = torch.from_numpy(small.train.toarray()).double()
    torch.testing.assert_close(users, (x @ items) / x.sum(1, keepdim=True).clamp(min=1), rtol=1e-5, atol=1e-6)
    # at full rank the ranking is EASE's symmetric one (positive spectrum only): compare top-5 lists of a few users
    full = build("ease-factors", dim=small.n_items, ease_reg=reg, epochs=0).fit(small)
    sym_pos = vec @ torch.diag(lam.clamp(min=0)) @ vec.T
    u = torch.arange(6)
    assert torch.equal(full.score(u).topk(5).indices, (x[u] @ sym_pos).topk(5).indices)
    b.save(tmp_path / "e.pt", small)
    torch.testing.assert_close(Backend.load(tmp_path / "e.pt", small).score(u), b.score(u))
    with pytest.raises(ConfigError, match="ease_reg"):
        build("ease-factors", ease_reg=0.0, epochs=0).fit(small)
    with pytest.raises(ConfigError, match="between 1 and the number of items"):
        build("ease-factors", dim=small.n_items + 1, epochs=0).fit(small)


def test_cli_pretrain_ease_factors(tmp_path, capsys):
    cfg = tmp_path / "e.yaml"
    cfg.write_text("data: {name: synthetic, synthetic: {n_users: 120, n_items: 60, mean_items: 10}}\n"
                   "backend: {name: ease-factors, dim: 8, ease_reg: 10.0}\ntrain: {epochs: 0}\n")
    assert main(["pretrain", "--config", str(cfg), "--output", str(tmp_path / "r"), "--json", "--quiet"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["backend"] == "ease-factors" and payload["metrics"]["test"]["recall@20"] > 20 / 60
    data = make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10))
    b = Backend.load(tmp_path / "r" / "backend.pt", data)
    assert b.config.layers == 0 and b.item_embeddings().norm(dim=1).mean().item() == pytest.approx(1.0, rel=1e-5)


def test_ials_backend_is_the_ials_baseline(small, tmp_path):
    """backend 'ials' holds the iALS factors as frozen embeddings: it ranks and folds new users in exactly as the
    iALS baseline, reloads, and DDRM trains on it."""
    pytest.importorskip("implicit")
    from ddrm.baselines import build as build_baseline

    b = build("ials", dim=8, ials_reg=0.5, ials_alpha=4.0, ials_iterations=10, epochs=0).fit(small)
    ref = build_baseline("ials", factors=8, reg=0.5, alpha=4.0, iterations=10).fit(small)
    u = torch.arange(small.n_users)
    torch.testing.assert_close(b.score(u), ref.score(u))
    assert b.config.layers == 0
    histories = [np.array([1, 2, 3]), small.train[4].indices]  # a new user folds in as iALS's user step, not a mean
    torch.testing.assert_close(b.score_history(histories), ref.score_history(histories))
    b.save(tmp_path / "i.pt", small)
    again = Backend.load(tmp_path / "i.pt", small)
    torch.testing.assert_close(again.score(u), b.score(u))
    torch.testing.assert_close(again.score_history(histories), b.score_history(histories))
    with pytest.raises(ConfigError, match="ials_alpha"):
        build("ials", ials_alpha=0.0)
