from __future__ import annotations

import numpy as np
import pytest
import torch

from ddrm.baselines import EASE, ItemKNN, MostPop, RP3beta, build, run_settings
from ddrm.errors import ConfigError
from ddrm.evaluation import evaluate


@pytest.mark.parametrize("name", ["itemknn", "ease", "rp3beta"])
def test_checkerboard_parity(checkerboard, name):
    """Every personalised baseline must recommend items of the user's own parity first."""
    model = build(name).fit(checkerboard)
    items, _ = model.recommend(torch.arange(checkerboard.n_users), k=2)
    parity = items % 2 == torch.arange(checkerboard.n_users)[:, None] % 2
    assert parity.all()
    assert evaluate(model, checkerboard, "test", (2,)).metrics["hit@2"] == 1.0


def test_recommend_filters_seen(checkerboard):
    model = EASE(reg=1.0).fit(checkerboard)
    items, scores = model.recommend(np.arange(checkerboard.n_users), k=3)
    train = checkerboard.train.toarray()
    assert not train[np.arange(checkerboard.n_users)[:, None], items.numpy()].any()
    assert (scores[:, :-1] >= scores[:, 1:]).all()


def test_mostpop_counts(random_data):
    model = MostPop().fit(random_data)
    s = model.score(torch.tensor([0, 5]))
    assert torch.equal(s[0], torch.tensor(random_data.train.toarray().sum(0), dtype=torch.float32))
    assert torch.equal(s[0], s[1])


def test_ease_closed_form(random_data):
    x = random_data.train.toarray().astype(np.float64)
    reg = 5.0
    p = np.linalg.inv(x.T @ x + reg * np.eye(x.shape[1]))
    b = np.eye(x.shape[1]) - p / np.diag(p)
    model = EASE(reg=reg).fit(random_data)
    np.testing.assert_allclose(model.weights_.numpy(), b, atol=1e-5)
    assert np.allclose(np.diag(model.weights_.numpy()), 0)


def test_itemknn_against_naive_cosine(random_data):
    x = random_data.train.toarray().astype(np.float64)
    shrink = 2.0
    n = np.sqrt(x.sum(0))
    sim = (x.T @ x) / (n[:, None] * n[None, :] + shrink + 1e-12)
    np.fill_diagonal(sim, 0)
    model = ItemKNN(topk=x.shape[1], shrink=shrink).fit(random_data)
    np.testing.assert_allclose(model.weights_.toarray(), sim, atol=1e-5)
    small = ItemKNN(topk=3, shrink=shrink).fit(random_data).weights_.toarray()
    assert ((small > 0).sum(0) <= 3).all()


def test_rp3beta_against_naive(random_data):
    x = random_data.train.toarray().astype(np.float64)
    alpha, beta = 0.8, 0.3
    pop = x.sum(0)
    p_ui = (x / np.maximum(x.sum(1, keepdims=True), 1)) ** alpha
    p_iu = (x.T / np.maximum(pop[:, None], 1)) ** alpha
    w = (p_iu @ p_ui) / np.maximum(pop, 1)[None, :] ** beta
    np.fill_diagonal(w, 0)
    model = RP3beta(alpha=alpha, beta=beta, topk=x.shape[1]).fit(random_data)
    np.testing.assert_allclose(model.weights_.toarray(), w, atol=1e-5)
    small = RP3beta(alpha=alpha, beta=beta, topk=2).fit(random_data).weights_.toarray()
    assert ((small > 0).sum(1) <= 2).all()  # top-k targets per source item


def test_size_guard(random_data):
    with pytest.raises(ConfigError, match="max_items"):
        EASE(max_items=10).fit(random_data)


def test_unknown_names_and_params():
    with pytest.raises(ConfigError, match="unknown baseline"):
        build("svd")
    with pytest.raises(ConfigError, match="unknown parameter"):
        build("ease", alpha=1)


def test_run_settings_reach_only_the_baselines_that_take_them():
    # the seed / device / --quiet of a command, laid over a baseline's config by ddrm baseline, tune and the cells
    assert run_settings("ease", seed=3, device="cuda", quiet=True) == {}
    assert run_settings("ials", seed=3, device="cuda", quiet=True) == {"seed": 3}
    assert run_settings("MultVAE", seed=3, device="cuda", quiet=True) == {"seed": 3, "device": "cuda", "quiet": True}
    assert run_settings("diffrec", quiet=False) == {}  # no --quiet: the config decides
    assert run_settings("nosuch", seed=1) == {}


def test_ials_factors_solve_the_weighted_least_squares():
    """After the last sweep each item factor is the weighted ridge solution given the user factors (naive solve:
    confidence alpha on observed entries, 1 elsewhere); same seed, same factors; scores are U V^T."""
    pytest.importorskip("implicit")
    from ddrm.baselines.ials import ials_factors
    from ddrm.data.synthetic import SyntheticConfig, make_synthetic

    data = make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10))
    x = data.train.toarray().astype(np.float64)
    reg, alpha, k = 0.5, 4.0, 8
    u, v = (a.astype(np.float64) for a in ials_factors(data.train, k, reg, alpha, iterations=30, seed=0))
    for i in range(x.shape[1]):
        c = np.where(x[:, i] > 0, alpha, 1.0)
        solution = np.linalg.solve((u.T * c) @ u + reg * np.eye(k), (u.T * c) @ x[:, i])
        np.testing.assert_allclose(v[i], solution, rtol=1e-3, atol=1e-4)
    again = ials_factors(data.train, k, reg, alpha, iterations=30, seed=0)
    assert np.array_equal(again[0], u.astype(np.float32)) and np.array_equal(again[1], v.astype(np.float32))
    model = build("ials", factors=k, reg=reg, alpha=alpha, iterations=30).fit(data)
    torch.testing.assert_close(model.score(torch.tensor([3, 7])), torch.from_numpy((u[[3, 7]] @ v.T).astype(np.float32)))
    with pytest.raises(ConfigError, match="alpha > 0"):
        build("ials", alpha=0.0).fit(data)


def test_ials_folds_a_new_user_in_by_its_user_step():
    """score_history solves iALS's user equation against the fitted item factors: the same factors as a naive solve
    and as implicit's own recalculate_user; order and repeats in a history do not matter."""
    pytest.importorskip("implicit")
    from implicit.cpu.als import AlternatingLeastSquares

    from ddrm.baselines.ials import fold_in_factors
    from ddrm.data.interactions import history_matrix
    from ddrm.data.synthetic import SyntheticConfig, make_synthetic

    data = make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10))
    reg, alpha, k = 0.5, 4.0, 8
    model = build("ials", factors=k, reg=reg, alpha=alpha, iterations=10).fit(data)
    histories = [data.train[3].indices, np.array([1, 2, 3]), np.array([7])]
    x = history_matrix(histories, data.n_items)
    got = fold_in_factors(x, model.item_factors_, reg, alpha).double().numpy()
    v = model.item_factors_.double().numpy()
    for b, h in enumerate(histories):  # the naive solve: confidence alpha on the history, 1 elsewhere
        c = np.ones(data.n_items)
        c[h] = alpha
        p = np.zeros(data.n_items)
        p[h] = 1.0
        np.testing.assert_allclose(got[b], np.linalg.solve((v.T * c) @ v + reg * np.eye(k), (v.T * c) @ p),
                                   rtol=1e-6, atol=1e-8)
    ref = AlternatingLeastSquares(factors=k, regularization=reg, alpha=alpha)
    ref.user_factors, ref.item_factors = model.user_factors_.numpy(), model.item_factors_.numpy()
    np.testing.assert_allclose(got, ref.recalculate_user(np.arange(3), x), rtol=1e-3, atol=1e-4)
    scores = model.score_history(histories)
    torch.testing.assert_close(scores, torch.from_numpy((got @ v.T).astype(np.float32)))
    torch.testing.assert_close(model.score_history([np.array([3, 2, 1, 2])])[0], scores[1])
    # a training user's own history lands near the factor ALS fitted for them (its last user step saw older items)
    own = fold_in_factors(data.train[[3]], model.item_factors_, reg, alpha)[0]
    assert torch.nn.functional.cosine_similarity(own, model.user_factors_[3], dim=0) > 0.95


def test_ials_checkerboard_parity(checkerboard):
    pytest.importorskip("implicit")
    model = build("ials", factors=2, reg=0.1, alpha=10.0).fit(checkerboard)  # the rank-2 parity structure
    items, _ = model.recommend(torch.arange(checkerboard.n_users), k=2)
    assert (items % 2 == torch.arange(checkerboard.n_users)[:, None] % 2).all()
