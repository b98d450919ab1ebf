"""Noise scores of training interactions, the cleaned dataset and ``ddrm noise`` end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddrm import cleaning
from ddrm.backends import build
from ddrm.baselines import EASE
from ddrm.cli import main
from ddrm.data import SyntheticConfig, load_dataset, make_synthetic
from ddrm.errors import ConfigError
from ddrm.evaluation import noise_auc
from ddrm.model import DDRM
from ddrm.training import TrainConfig


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=150, n_items=70, mean_items=12, seed=4))


def test_scores_are_the_models_own_per_interaction(data):
    backend = build("mf", epochs=6, eval_every=3, lr=0.02, batch_size=256, quiet=True).fit(data)
    s = cleaning.interaction_scores(backend, data, batch_users=17)  # batches that cut across users
    users, items = data.pairs("train")
    u, i = backend.user_embeddings(), backend.item_embeddings()
    naive = np.array([float(u[a] @ i[b]) for a, b in zip(users, items, strict=True)])
    np.testing.assert_allclose(s, naive, rtol=1e-5, atol=1e-6)
    ease = EASE(reg=10.0).fit(data)
    full = ease.score(torch.arange(data.n_users)).numpy()
    np.testing.assert_allclose(cleaning.interaction_scores(ease, data), full[users, items], rtol=1e-6)
    ddrm = DDRM(backend, train=TrainConfig(epochs=1, batch_size=256), quiet=True, dims=(16,), steps=5).fit(data)
    np.testing.assert_array_equal(cleaning.interaction_scores(ddrm, data), ddrm.noise_scores(data))
    pop = cleaning.popularity_scores(data)
    assert pop[0] == np.sum(data.train.indices == data.train.indices[0])


def test_most_suspect_and_drop_take_the_lowest_scores(data):
    nnz = data.train.nnz
    scores = np.arange(nnz, dtype=np.float64)[::-1].copy()  # the last CSR interactions are the most suspect
    scores[5] = -1.0
    top = cleaning.most_suspect(scores, data, 3)
    users, items = data.pairs("train")
    expect = [5, nnz - 1, nnz - 2]
    assert [(t["user_id"], t["item_id"]) for t in top] == [(str(data.raw_user(users[k])), str(data.raw_item(items[k])))
                                                          for k in expect]
    assert [t["score"] for t in top] == [-1.0, 0.0, 1.0] and [t["rank"] for t in top] == [1, 2, 3]
    cleaned = cleaning.drop_suspects(data, scores, 0.1)
    n_drop = round(0.1 * nnz)
    assert cleaned.train.nnz == nnz - n_drop
    kept = set(zip(*cleaned.pairs("train"), strict=True))
    dropped = {(users[k], items[k]) for k in np.argsort(scores, kind="stable")[:n_drop]}
    assert not kept & dropped and len(kept | dropped) == nnz
    # labels follow the kept interactions; valid / test untouched
    noise = data.labels["train"]["noise"]
    keep_idx = np.sort(np.argsort(scores, kind="stable")[n_drop:])
    np.testing.assert_array_equal(cleaned.labels["train"]["noise"], noise[keep_idx])
    assert (cleaned.valid != data.valid).nnz == 0 and (cleaned.test != data.test).nnz == 0
    with pytest.raises(ConfigError, match="drop ratio"):
        cleaning.drop_suspects(data, scores, 1.0)


def test_noise_labels_from_planted_flags_or_low_ratings(data):
    flags, source = cleaning.noise_labels(data)
    assert source == "planted noise label" and flags.sum() == data.labels["train"]["noise"].sum()
    rated = data.with_train(data.train, {"rating": np.where(np.arange(data.train.nnz) % 4 == 0, 2.0, 5.0)})
    flags, source = cleaning.noise_labels(rated, threshold=4)
    assert source == "rating < 4" and flags.sum() == (np.arange(data.train.nnz) % 4 == 0).sum()
    assert cleaning.noise_labels(data.with_train(data.train, None)) == (None, "")
    rep = cleaning.auc_report({"s": -np.arange(data.train.nnz, dtype=float)}, rated)
    assert rep["auc"]["s"] == pytest.approx(noise_auc(-np.arange(data.train.nnz, dtype=float), flags))


def test_ddrm_noise_command_lists_suspects_and_writes_a_cleaned_dataset(tmp_path, capsys):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "data: {name: synthetic, synthetic: {n_users: 100, n_items: 50, mean_items: 8, noise_ratio: 0.2}}\n"
        "backend: {name: mf}\npretrain: {epochs: 6, eval_every: 3, batch_size: 256, lr: 0.02}\n"
        "ddrm: {steps: 4, dims: [16]}\ntrain: {epochs: 2, eval_every: 1, batch_size: 256}\n")
    run = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--output", str(run), "--quiet"]) == 0
    capsys.readouterr()
    out = tmp_path / "clean"
    code = main(["noise", "--checkpoint", str(run / "ddrm.pt"), "--top", "5", "--drop-ratio", "0.2", "-o", str(out),
                 "--json", "--quiet"])
    p = json.loads(capsys.readouterr().out)
    assert code == 0 and p["kind"] == "ddrm" and len(p["suspects"]) == 5
    assert p["suspects"][0]["score"] <= p["suspects"][-1]["score"]
    assert p["labels"] == "planted noise label" and set(p["auc"]) == {"DDRM reweighting score", "item popularity"}
    assert 0 <= p["auc"]["DDRM reweighting score"] <= 1
    cleaned = load_dataset(str(out))
    assert cleaned.train.nnz == p["kept"] == p["interactions"] - p["dropped"]
    assert p["dropped"] == round(0.2 * p["interactions"])
    assert main(["pretrain", "--data", str(out), "--set", "backend.name=mf", "--set", "train.epochs=1",
                 "--output", str(tmp_path / "re"), "--quiet"]) == 0  # any model retrains on the cleaned data
    code = main(["noise", "--checkpoint", str(run / "backend.pt"), "--top", "3"])
    text = capsys.readouterr().out
    assert code == 0 and "backend score" in text and "AUC" in text
    for bad in (["--drop-ratio", "1.5", "-o", str(tmp_path / "x")], ["--drop-ratio", "0.1"], ["--top", "-1"]):
        assert main(["noise", "--checkpoint", str(run / "ddrm.pt"), *bad]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "x").exists()
