"""The contract every model meets (scikit-learn's estimator checks, implicit's shared test mixin): one test per
property, run on every baseline, every backbone and DDRM, on tiny synthetic data."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

import ddrm
from ddrm.data.synthetic import SyntheticConfig, make_synthetic

TINY = {"epochs": 2, "eval_every": 1, "batch_size": 256, "quiet": True}
MODELS = {
    "mostpop": lambda d: ddrm.baselines.build("mostpop"),
    "itemknn": lambda d: ddrm.baselines.build("itemknn", topk=20),
    "rp3beta": lambda d: ddrm.baselines.build("rp3beta", topk=20),
    "ease": lambda d: ddrm.baselines.build("ease", reg=10.0),
    "ials": lambda d: ddrm.baselines.build("ials", factors=8, iterations=3, threads=1),
    "diffrec": lambda d: ddrm.baselines.build("diffrec", dims=[32], epochs=2, batch_size=64, quiet=True),
    "multvae": lambda d: ddrm.baselines.build("multvae", dims=[32], latent=8, epochs=2, batch_size=64, quiet=True),
    "mf": lambda d: ddrm.backends.build("mf", dim=8, **TINY),
    "lightgcn": lambda d: ddrm.backends.build("lightgcn", dim=8, layers=2, **TINY),
    "sgl": lambda d: ddrm.backends.build("sgl", dim=8, layers=2, **TINY),
    "lightgcn-rce": lambda d: ddrm.backends.build("lightgcn", dim=8, layers=1, denoise="rce", **TINY),
    "ials-factors": lambda d: ddrm.backends.build("ials", dim=8, ials_iterations=3, epochs=0, quiet=True),
    "ease-factors": lambda d: ddrm.backends.build("ease-factors", dim=8, ease_reg=10.0, epochs=0, quiet=True),
    # DDRM's backend is fitted first: DDRM.fit trains the denoisers on a frozen, fitted backbone
    "ddrm-mf": lambda d: ddrm.DDRM(ddrm.backends.build("mf", dim=8, **TINY).fit(d), steps=4, dims=(16,), epochs=2,
                                   eval_every=1, batch_size=256, quiet=True),
    "ddrm-fused": lambda d: ddrm.DDRM(ddrm.backends.build("mf", dim=8, **TINY).fit(d), steps=4, dims=(16,),
                                      epochs=1, eval_every=1, batch_size=256, quiet=True, fusion_choices=[0, 0.5, 1]),
}


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=80, n_items=50, mean_items=10, seed=3))


def _snapshot(data):
    return {s: (m.data.copy(), m.indices.copy(), m.indptr.copy()) for s, m in
            (("train", data.train), ("valid", data.valid), ("test", data.test))}, copy.deepcopy(data.labels)


@pytest.fixture(scope="module")
def fitted(data):
    """Each model fitted once, with the state of the data before it was fitted."""
    before = _snapshot(data)
    out = {}
    for name, make in MODELS.items():
        model = make(data)
        out[name] = (model, model.fit(data))
    return out, before


@pytest.mark.parametrize("name", MODELS)
def test_fit_returns_the_model_and_leaves_the_data_alone(fitted, data, name):
    models, (mats, labels) = fitted
    model, returned = models[name]
    assert returned is model
    after, after_labels = _snapshot(data)
    for s, arrays in mats.items():
        assert all(np.array_equal(a, b) for a, b in zip(arrays, after[s], strict=True)), f"{name} changed {s}"
    assert after_labels.keys() == labels.keys()


@pytest.mark.parametrize("name", MODELS)
def test_a_new_users_history_is_folded_in(fitted, data, name):
    model = fitted[0][name][0]
    histories = [data.train[5].indices, np.array([1, 2, 3]), np.array([4])]
    s = model.score_history(histories)
    assert s.shape == (3, data.n_items) and torch.isfinite(s).all()
    torch.testing.assert_close(model.score_history(histories[1:2])[0], s[1], rtol=1e-5, atol=1e-5)  # batch-free


@pytest.mark.parametrize("name", MODELS)
def test_scores_are_finite_and_do_not_depend_on_the_batch(fitted, data, name):
    model = fitted[0][name][0]
    users = torch.arange(data.n_users)
    full = model.score(users)
    assert full.shape == (data.n_users, data.n_items) and torch.isfinite(full).all()
    order = torch.randperm(data.n_users, generator=torch.Generator().manual_seed(0))[:17]
    torch.testing.assert_close(model.score(order), full[order], rtol=1e-5, atol=1e-5)  # another batch, order
    torch.testing.assert_close(model.score(order[3:4]), full[order[3:4]], rtol=1e-5, atol=1e-5)  # alone


@pytest.mark.parametrize("name", MODELS)
def test_recommend_ranks_unseen_items_by_score(fitted, data, name):
    model = fitted[0][name][0]
    users = torch.arange(0, data.n_users, 7)
    items, scores = model.recommend(users, k=5)
    assert items.shape == scores.shape == (users.numel(), 5)
    full = model.score(users).float()
    for row, u in enumerate(users.tolist()):
        seen = set(data.train[u].indices.tolist())
        assert not seen & set(items[row].tolist()), f"{name} recommended a training item"
        assert (scores[row][:-1] >= scores[row][1:]).all()
        torch.testing.assert_close(scores[row], full[row, items[row]])
        unseen = torch.tensor(sorted(set(range(data.n_items)) - seen))
        assert scores[row, -1] >= full[row, unseen].topk(5).values[-1] - 1e-6  # nothing better left out


@pytest.mark.parametrize("name", MODELS)
def test_refitting_with_the_same_seed_gives_the_same_scores(fitted, data, name):
    model = fitted[0][name][0]
    again = MODELS[name](data).fit(data)
    users = torch.arange(0, data.n_users, 5)
    torch.testing.assert_close(again.score(users), model.score(users), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_evaluation_of_every_model_gives_metrics_in_range(fitted, data, name):
    result = ddrm.evaluate(fitted[0][name][0], data, split="test", ks=(5, 20))
    assert all(0.0 <= v <= 1.0 for v in result.metrics.values())
    assert set(result.metrics) >= {"recall@20", "ndcg@20"}


@pytest.mark.parametrize("name", MODELS)
def test_a_saved_model_loads_and_scores_the_same(fitted, data, name, tmp_path):
    from ddrm.runs import load_model

    model = fitted[0][name][0]
    model.save(tmp_path / "model.pt", data)
    again = load_model(tmp_path / "model.pt", data)
    assert type(again) is type(model)
    users = torch.arange(data.n_users)
    torch.testing.assert_close(again.score(users), model.score(users), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(again.recommend(users[:9], k=5)[0], model.recommend(users[:9], k=5)[0])
