"""Datasets already in memory (ddrm.from_matrix / ddrm.from_frame): the same Interactions as the files give."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import ddrm
from ddrm.data import SplitOptions, read_dataset
from ddrm.errors import DataError


def _same(a, b):
    for s in ("train", "valid", "test"):
        x, y = a.split(s), b.split(s)
        assert x.shape == y.shape and (x != y).nnz == 0, s


def _pairs(rng, n_users=30, n_items=20, n=300):
    return rng.integers(0, n_users, n), rng.integers(0, n_items, n)


def test_from_matrix_presplit_equals_the_diffrec_files(tmp_path):
    rng = np.random.default_rng(0)
    mats, splits = {}, {}
    for s, n in (("train", 400), ("valid", 60), ("test", 80)):
        u, i = _pairs(rng, n=n)
        u[:30], i[:20] = np.arange(30), np.arange(20)  # every row and column occurs, so the files give this shape
        np.save(tmp_path / f"{s}_list.npy", np.stack([u, i], 1))
        counts = sp.csr_matrix((np.full(n, 3.0), (u, i)), shape=(30, 20))  # counts, duplicates summed
        mats[s], splits[s] = counts, (u, i)
    data = ddrm.from_matrix(mats["train"], mats["valid"], mats["test"])
    _same(data, read_dataset(tmp_path))
    assert set(np.unique(data.train.data)) == {1.0}  # counts become interactions


def test_from_matrix_splits_one_matrix_keeping_its_rows_and_columns():
    rng = np.random.default_rng(1)
    u, i = _pairs(rng, 40, 25, 500)
    m = sp.csr_matrix((rng.random(500) + 0.5, (u, i)), shape=(40, 25)).tolil()
    m[0, 0], m[1, 1] = 0.0, 0.0  # explicit zeros are no interaction
    m = m.tocsr()
    nonzero = (m != 0).astype(np.float32)
    data = ddrm.from_matrix(m, split=SplitOptions(drop_cold=False, seed=3))
    assert (data.n_users, data.n_items) == (40, 25)
    total = data.train + data.valid + data.test
    assert (total != nonzero).nnz == 0 and total.max() == 1  # a partition of the nonzeros, row u = user u
    # 384 interactions, the k-th of a seeded permutation at position k / 384: train k / 384 < 0.7 (k <= 268),
    # valid < 0.8 (k <= 307), test the rest
    assert nonzero.nnz == 384 and (data.train.nnz, data.valid.nnz, data.test.nnz) == (269, 39, 76)
    again = ddrm.from_matrix(m, split=SplitOptions(drop_cold=False, seed=3))
    _same(data, again)  # seeded


def test_from_matrix_train_and_test_carves_validation_from_train():
    rng = np.random.default_rng(2)
    train = sp.csr_matrix((np.ones(400), _pairs(rng, n=400)), shape=(30, 20))
    test = sp.csr_matrix((np.ones(50), _pairs(rng, n=50)), shape=(30, 20))
    data = ddrm.from_matrix(train, test=test, valid_ratio=0.2, user_ids=[f"u{k}" for k in range(30)])
    train_bin = (train != 0).astype(np.float32)
    assert data.valid.nnz > 0 and ((data.train + data.valid) != train_bin).nnz == 0
    assert data.user_ids[7] == "u7" and data.item_ids is None


@pytest.mark.parametrize("call, words", [
    (lambda: ddrm.from_matrix(sp.eye(3), test=sp.eye(4)), "different shapes"),
    (lambda: ddrm.from_matrix(-sp.eye(3)), "negative values"),
    (lambda: ddrm.from_matrix(np.array([[np.nan, 1.0], [1.0, 0.0]])), "NaN"),
    (lambda: ddrm.from_matrix(sp.eye(3), valid=sp.eye(3)), "needs a test matrix"),
    (lambda: ddrm.from_matrix(np.arange(5)), "2-D"),
    (lambda: ddrm.from_matrix(sp.eye(5), split=SplitOptions(method="chrono")), "random split"),
    (lambda: ddrm.from_matrix(sp.eye(3), test=sp.eye(3), user_ids=["a"]), "user_ids"),
    (lambda: ddrm.from_matrix(sp.csr_matrix((3, 3))), "no interactions"),
])
def test_from_matrix_bad_input_is_one_sentence(call, words):
    with pytest.raises(DataError, match=words) as err:
        call()
    assert str(err.value).count(". ") == 0 and str(err.value).endswith(".")


def _columns(rng, n=600):
    return {"user_id": rng.integers(0, 40, n), "item_id": np.array([f"i{k}" for k in rng.integers(0, 30, n)]),
            "rating": rng.integers(1, 6, n).astype(float), "timestamp": rng.permutation(n).astype(float) + 1e9}


def test_from_frame_equals_the_same_table_read_from_csv(tmp_path):
    cols = _columns(np.random.default_rng(4))
    lines = ["user_id,item_id,rating,timestamp"] + [f"{u},{i},{r},{t}" for u, i, r, t in zip(*cols.values(), strict=True)]
    (tmp_path / "ratings.csv").write_text("\n".join(lines) + "\n")
    for split in (None, SplitOptions(method="random", seed=5), SplitOptions(mode="noisy")):
        from_disk = read_dataset(tmp_path / "ratings.csv", ddrm.data.ReadOptions(split=split or SplitOptions()))
        data = ddrm.from_frame(cols, split=split)
        _same(data, from_disk)
        assert list(data.user_ids) == list(from_disk.user_ids) and list(data.item_ids) == list(from_disk.item_ids)
        for s in ("train", "test"):
            np.testing.assert_array_equal(data.labels[s]["rating"], from_disk.labels[s]["rating"])
    noisy = ddrm.from_frame(cols, split=SplitOptions(mode="noisy"))
    assert noisy.labels["test"]["rating"].min() >= 4 and noisy.labels["train"]["rating"].min() < 4
    chrono = ddrm.from_frame(cols)  # default: chronological when there are timestamps
    assert chrono.labels["train"]["timestamp"].max() < chrono.labels["test"]["timestamp"].min()


def test_from_frame_presplit_mapping_and_errors():
    rng = np.random.default_rng(6)
    train, test = _columns(rng, 500), _columns(rng, 80)
    data = ddrm.from_frame({"train": train, "test": test}, valid_ratio=0.1)
    distinct = len(set(zip(train["user_id"], train["item_id"], strict=True)))
    assert data.valid.nnz > 0 and data.train.nnz + data.valid.nnz == distinct
    with pytest.raises(DataError, match=r"no column 'user' \(columns: user_id, item_id, rating, timestamp\)"):
        ddrm.from_frame(train, user_col="user")
    with pytest.raises(DataError, match="need test"):
        ddrm.from_frame({"train": train})
    bad = dict(train, item_id=np.array(["a"] * 499 + [""]))
    with pytest.raises(DataError, match="row 499: missing item_id"):
        ddrm.from_frame(bad)
    bad = dict(train, rating=np.r_[np.ones(10), np.nan, np.ones(489)])
    with pytest.raises(DataError, match="row 10: missing or infinite rating"):
        ddrm.from_frame(bad)


def test_from_frame_takes_a_pandas_dataframe_with_datetimes():
    pd = pytest.importorskip("pandas")
    cols = _columns(np.random.default_rng(7))
    frame = pd.DataFrame({**cols, "timestamp": pd.to_datetime(cols["timestamp"], unit="s")})
    from_pandas, from_columns = ddrm.from_frame(frame), ddrm.from_frame(cols)
    _same(from_pandas, from_columns)
    np.testing.assert_array_equal(from_pandas.labels["test"]["timestamp"], from_columns.labels["test"]["timestamp"])
    frame.loc[3, "user_id"] = None
    with pytest.raises(DataError, match="row 3: missing user_id"):
        ddrm.from_frame(frame)
    model = ddrm.baselines.EASE(reg=10.0).fit(ddrm.from_frame(cols))  # and any model fits on it
    assert 0 <= ddrm.evaluate(model, ddrm.from_frame(cols), split="test").metrics["recall@20"] <= 1
