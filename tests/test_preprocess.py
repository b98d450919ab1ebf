from __future__ import annotations

import numpy as np
import pytest

from ddrm.data import SyntheticConfig, carve_validation, inject_noise, make_synthetic
from ddrm.data.sampling import sample_negatives, sample_triples
from ddrm.errors import ConfigError


def test_inject_noise_avoids_every_split_and_is_labelled(random_data):
    noisy = inject_noise(random_data, 0.5, seed=1)
    n_new = round(0.5 * random_data.train.nnz)
    assert noisy.train.nnz == random_data.train.nnz + n_new
    flags = noisy.labels["train"]["noise"].astype(bool)
    assert flags.sum() == n_new
    users, items = noisy.pairs("train")
    taken = (random_data.train + random_data.valid + random_data.test).toarray() > 0
    assert not taken[users[flags], items[flags]].any()
    assert taken[users[~flags], items[~flags]].all()
    assert (noisy.valid != random_data.valid).nnz == 0
    again = inject_noise(random_data, 0.5, seed=1)
    assert (again.train != noisy.train).nnz == 0
    with pytest.raises(ConfigError):
        inject_noise(random_data, -0.1)


def test_carve_validation_keeps_one_train_item(random_data):
    carved = carve_validation(random_data, 0.5, seed=0)
    deg_before = np.diff(random_data.train.indptr)
    deg_after = np.diff(carved.train.indptr)
    assert (deg_after[deg_before > 0] >= 1).all()
    assert carved.train.nnz + carved.valid.nnz == random_data.train.nnz
    assert carved.train.multiply(carved.valid).nnz == 0


def test_synthetic_is_seeded_and_labelled():
    cfg = SyntheticConfig(n_users=100, n_items=50, mean_items=10, seed=4)
    a, b = make_synthetic(cfg), make_synthetic(cfg)
    assert a.fingerprint() == b.fingerprint()
    c = make_synthetic(SyntheticConfig(n_users=100, n_items=50, mean_items=10, seed=5))
    assert c.fingerprint() != a.fingerprint()
    flags = a.labels["train"]["noise"]
    assert flags.sum() == round(0.2 * (a.train.nnz - flags.sum()))


def test_negative_sampling_never_returns_a_positive(random_data):
    rng = np.random.default_rng(0)
    users = rng.integers(0, random_data.n_users, 5000)
    neg = sample_negatives(random_data.train, users, rng)
    assert not random_data.train.toarray()[users, neg].any()
    u, p, n = sample_triples(random_data.train, 3000, rng)
    dense = random_data.train.toarray()
    assert dense[u, p].all() and not dense[u, n].any()
