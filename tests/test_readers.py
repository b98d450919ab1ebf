from __future__ import annotations

import numpy as np
import pytest

from ddrm.data import ReadOptions, SplitOptions, detect_format, load_dataset, read_dataset, save_dataset
from ddrm.errors import DataError

from .conftest import require_shared


def _npy_folder(tmp_path, train, valid, test):
    for name, arr in (("train", train), ("valid", valid), ("test", test)):
        np.save(tmp_path / f"{name}_list.npy", np.asarray(arr, dtype=np.int64))
    return tmp_path


def test_diffrec_npy(tmp_path):
    folder = _npy_folder(tmp_path, [[0, 0], [0, 1], [1, 2]], [[1, 0]], [[0, 3], [1, 3]])
    data = read_dataset(folder)
    assert detect_format(folder) == "diffrec"
    assert (data.n_users, data.n_items) == (2, 4)
    assert data.train.nnz == 3 and data.valid.nnz == 1 and data.test.nnz == 2
    assert data.test[1, 3] == 1


def test_duplicates_are_collapsed_with_a_count(tmp_path, caplog):
    folder = _npy_folder(tmp_path, [[0, 0], [0, 0], [0, 1], [0, 1], [1, 1]], [[1, 0]], [[0, 2]])
    data = read_dataset(folder)
    assert data.train.nnz == 3
    assert "collapsed 2 duplicated" in caplog.text


def test_lightgcn_lines_with_carved_validation(tmp_path):
    (tmp_path / "train.txt").write_text("0 1 2 3 4 5 6 7 8 9 10\n1 0 1\n2 5\n")
    (tmp_path / "test.txt").write_text("0 11\n1 3\n2\n")
    data = read_dataset(tmp_path, ReadOptions(valid_ratio=0.2, seed=3))
    assert data.n_users == 3 and data.n_items == 12
    assert data.train.nnz + data.valid.nnz == 13
    assert data.valid.nnz == 2 + 0 + 0  # 20 % of 10 items; users with 2 and 1 items keep theirs
    assert np.diff(data.train.indptr).min() >= 1
    again = read_dataset(tmp_path, ReadOptions(valid_ratio=0.2, seed=3))
    assert (again.valid != data.valid).nnz == 0


def test_recbole_presplit_and_roundtrip(tmp_path):
    src = tmp_path / "toy"
    src.mkdir()
    head = "user_id:token\titem_id:token\trating:float\n"
    (src / "toy.train.inter").write_text(head + "u1\ta\t5\nu1\tb\t3\nu2\ta\t4\nu2\tc\t1\n")
    (src / "toy.valid.inter").write_text(head + "u1\tc\t4\n")
    (src / "toy.test.inter").write_text(head + "u2\tb\t5\n")
    data = read_dataset(src)
    assert data.user_ids.tolist() == ["u1", "u2"] and data.item_ids.tolist() == ["a", "b", "c"]
    assert data.labels["train"]["rating"].tolist() == [5, 3, 4, 1]
    out = save_dataset(data, tmp_path / "copy")
    again = read_dataset(out)
    assert again.fingerprint() == data.fingerprint()
    assert again.labels["train"]["rating"].tolist() == [5, 3, 4, 1]


def test_csv_single_file_random_split(tmp_path):
    rows = ["user,item,score"] + [f"{u},{i},1" for u in range(20) for i in range(u % 5, u % 5 + 10)]
    (tmp_path / "inter.csv").write_text("\n".join(rows) + "\n")
    opts = ReadOptions(user_col="user", item_col="item", split=SplitOptions(method="random", ratios=(0.8, 0.1, 0.1)))
    data = read_dataset(tmp_path / "inter.csv", opts)
    total = data.train.nnz + data.valid.nnz + data.test.nnz
    assert total <= 200 and data.train.nnz >= 150


def test_movielens_ratings_dat_noisy_split(tmp_path):
    lines = []
    t = 0
    for u in range(1, 11):
        for i in range(1, 21):
            t += 1
            lines.append(f"{u}::{i}::{1 + (u * i) % 5}::{t if i > 2 else u}")  # first items early for every user
    (tmp_path / "ratings.dat").write_text("\n".join(lines) + "\n")
    opts = ReadOptions(split=SplitOptions(method="chrono", mode="noisy", ratios=(0.6, 0.2, 0.2)))
    data = read_dataset(tmp_path, opts)
    assert detect_format(tmp_path) == "movielens"
    assert (data.labels["test"]["rating"] >= 4).all()
    assert (data.labels["train"]["rating"] < 4).any()
    ts = {s: data.labels[s]["timestamp"] for s in ("train", "valid", "test")}
    assert ts["train"].max() <= ts["valid"].min() and ts["valid"].max() <= ts["test"].min()


def test_clean_mode_drops_low_ratings_everywhere(tmp_path):
    rows = "\n".join(f"{u}\t{i}\t{1 + (u + i) % 5}\t{u * 100 + i}" for u in range(30) for i in range(30))
    (tmp_path / "u.data").write_text(rows + "\n")
    data = read_dataset(tmp_path, ReadOptions(split=SplitOptions(method="chrono-user", mode="clean")))
    for s in ("train", "valid", "test"):
        assert (data.labels[s]["rating"] >= 4).all()


def test_load_dataset_unknown_name():
    with pytest.raises(DataError, match="unknown dataset"):
        load_dataset("not-a-dataset")


def test_offline_named_dataset_explains(tmp_path, monkeypatch):
    import ddrm.data.registry as reg

    def no_network(*args, **kwargs):
        raise DataError("network unreachable")

    monkeypatch.setattr(reg, "download", no_network)
    with pytest.raises(DataError, match="DDRM_DATA"):
        load_dataset("ml-1m_noisy", root=tmp_path)
    with pytest.raises(DataError, match="no direct download"):
        load_dataset("gowalla", root=tmp_path)
    assert not any(tmp_path.rglob("*.npy"))


@pytest.mark.parametrize("name,users,items,train", [
    ("ml-1m_noisy", 5949, 3494, 429993), ("ml-1m_clean", 5949, 2810, 403277), ("yelp", 42712, 26822, 182357),
    ("amazon-book", 70679, 24915, None), ("gowalla", 29858, 40981, None), ("ml-100k", None, None, None),
])
def test_all_shared_folders_load(name, users, items, train):
    root = require_shared("data", name).parent  # a shared folder without this dataset skips (never downloads)
    data = load_dataset(name, root=root)
    if users is not None:
        assert (data.n_users, data.n_items) == (users, items)
    if train is not None:
        assert data.train.nnz == train
    assert data.valid.nnz > 0 and data.test.nnz > 0
    assert data.train.multiply(data.test).nnz == 0
    if name == "amazon-book":
        assert data.train.nnz + data.valid.nnz == 652514 and data.test.nnz == 193920
        assert data.user_ids[0] == "A3RTKL9KB8KLID"
    if name == "ml-100k":
        assert (data.labels["test"]["rating"] >= 4).all()
