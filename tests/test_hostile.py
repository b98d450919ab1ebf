"""Hostile inputs for every reader: one clear sentence and exit 2 (nothing written), or a documented behaviour."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from ddrm.cli import main

GARBAGE = bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)) + b"\xff\xfe\x00"


def _lightgcn(tmp, train: bytes | str, test: str = "0 1\n"):
    d = tmp / "lg"
    d.mkdir()
    (d / "train.txt").write_bytes(train if isinstance(train, bytes) else train.encode())
    (d / "test.txt").write_text(test)
    return d


def _file(tmp, name: str, content: bytes | str):
    p = tmp / name
    p.write_bytes(content if isinstance(content, bytes) else textwrap.dedent(content).lstrip().encode())
    return p


def _diffrec(tmp, train: bytes):
    d = tmp / "dr"
    d.mkdir()
    (d / "train_list.npy").write_bytes(train)
    np.save(d / "test_list.npy", np.array([[0, 1]]))
    return d


CSV_OK = "user_id,item_id,rating,timestamp\n"

# case -> (builder(tmp) -> path, extra CLI args, expected fragment of the one-line message)
ERRORS = {
    "lightgcn empty": (lambda t: _lightgcn(t, ""), [], "empty file"),
    "csv empty": (lambda t: _file(t, "r.csv", ""), [], "empty file"),
    "recbole empty": (lambda t: _file(t, "r.inter", ""), [], "empty file"),
    "movielens empty": (lambda t: _file(t, "u.data", ""), [], "empty file"),
    "diffrec empty": (lambda t: _diffrec(t, b""), [], "not a valid .npy"),
    "lightgcn garbage": (lambda t: _lightgcn(t, GARBAGE), [], "not a UTF-8 text file"),
    "csv garbage": (lambda t: _file(t, "r.csv", GARBAGE), [], "not a UTF-8 text file"),
    "recbole garbage": (lambda t: _file(t, "r.inter", GARBAGE), [], "not a UTF-8 text file"),
    "movielens garbage": (lambda t: _file(t, "ratings.dat", GARBAGE), [], "not a UTF-8 text file"),
    "diffrec garbage": (lambda t: _diffrec(t, GARBAGE), [], "not a valid .npy"),
    "csv wrong delimiter": (lambda t: _file(t, "r.csv", "user_id;item_id;rating\n1;2;5\n"), [], "wrong delimiter"),
    "recbole wrong delimiter": (lambda t: _file(t, "r.inter", "user_id:token,item_id:token\n1,2\n"), [],
                                "wrong delimiter"),
    "movielens wrong delimiter": (lambda t: _file(t, "u.data", "1,2,5,100\n"), [], "wrong delimiter"),
    "lightgcn id beyond int64": (lambda t: _lightgcn(t, "0 1 2\n1 99999999999999999999999\n"), [], "beyond 64 bits"),
    "csv nan rating": (lambda t: _file(t, "r.csv", CSV_OK + "1,2,5,10\n1,3,nan,11\n"), [], "line 3: rating value"),
    "movielens nan rating": (lambda t: _file(t, "u.data", "1\t2\t5\t10\n1\t3\tNaN\t11\n"), [],
                             "line 2: rating value 'NaN'"),
    "csv timestamp as text": (lambda t: _file(t, "r.csv", CSV_OK + "1,2,5,yesterday\n"), [],
                              "line 2: timestamp value 'yesterday' is not a number or an ISO date"),
    "csv header only": (lambda t: _file(t, "r.csv", CSV_OK), [], "has a header but no interactions"),
    "recbole header only": (lambda t: _file(t, "r.inter", "user_id:token\titem_id:token\n"), [],
                            "has a header but no interactions"),
    "lightgcn negative id": (lambda t: _lightgcn(t, "0 1\n1 -4\n"), [], "line 2: negative id"),
    "wrong format flag": (lambda t: _file(t, "r.csv", CSV_OK + "1,2,5,10\n"), ["--format", "lightgcn"],
                          "lightgcn format is a folder"),
}


@pytest.mark.parametrize("case", sorted(ERRORS))
def test_hostile_input_one_sentence_exit_2_nothing_written(capsys, tmp_path, case):
    build, extra, fragment = ERRORS[case]
    path = build(tmp_path)
    out_dir = tmp_path / "out"
    code = main(["data", "prepare", str(path), "--output", str(out_dir), "--quiet", *extra])
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("ddrm: error: "), err
    assert fragment in lines[0], lines[0]
    assert "Traceback" not in err
    assert not out_dir.exists() and not list(tmp_path.glob(".out*"))


def _info(capsys, path, *extra) -> tuple[dict, str]:
    code = main(["data", "info", str(path), "--json", *extra])
    cap = capsys.readouterr()
    assert code == 0, cap.err
    return json.loads(cap.out), cap.err


def test_csv_ids_are_opaque_strings_even_beyond_int64(capsys, tmp_path):
    big = "123456789012345678901234567890"
    d = tmp_path / "ids"
    d.mkdir()
    (d / "train.csv").write_text(f"user_id,item_id\n{big},a\n{big},b\n007,a\n7,b\n")
    (d / "test.csv").write_text(f"user_id,item_id\n{big},c\n7,a\n")
    info, _ = _info(capsys, d)
    assert info["n_users"] == 3 and info["n_items"] == 3  # '007' and '7' are different users


def test_iso_timestamps_are_accepted(capsys, tmp_path):
    rows = "".join(f"{u},{i},5,2020-01-{1 + (u * 7 + i) % 28:02d}T10:00:00\n" for u in range(12) for i in range(8))
    info, _ = _info(capsys, _file(tmp_path, "r.csv", CSV_OK + rows))
    assert sum(s["interactions"] for s in info["splits"].values()) > 0


def test_header_only_eval_split_and_users_unknown_to_train_warn(capsys, tmp_path):
    d = tmp_path / "pre"
    d.mkdir()
    (d / "train.csv").write_text("user_id,item_id\n1,a\n1,b\n2,a\n2,c\n3,b\n")
    (d / "valid.csv").write_text("user_id,item_id\n")
    (d / "test.csv").write_text("user_id,item_id\n1,c\n9,a\n")
    info, err = _info(capsys, d)
    assert "has a header but no interactions" in err
    assert "1 users and 0 items without any training interaction" in err
    assert info["splits"]["test"]["interactions"] == 2


def test_ten_million_line_file_is_streamed(tmp_path):
    """10M lines of u.data read in one pass with bounded memory (lists of Python strings would need > 4 GB)."""
    path = tmp_path / "u.data"
    rng = np.random.default_rng(0)
    with open(path, "w") as fh:
        for _ in range(10):
            n = 1_000_000
            u, i, r = rng.integers(0, 70_000, n), rng.integers(0, 10_000, n), rng.integers(1, 6, n)
            t = rng.integers(900_000_000, 1_000_000_000, n)
            fh.write("".join(f"{a}\t{b}\t{c}\t{d}\n" for a, b, c, d in zip(u.tolist(), i.tolist(), r.tolist(),
                                                                            t.tolist(), strict=True)))
    code = textwrap.dedent(f"""
        import resource, json
        from pathlib import Path
        from ddrm.data.readers import read_movielens_table
        t = read_movielens_table(Path({str(path)!r})); cols = {{"user": t.users, **t.extra}}
        print(json.dumps({{"rows": int(cols["user"].size), "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                           "first": [str(cols["user"][0]), float(cols["timestamp"][-1])]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["rows"] == 10_000_000
    assert out["rss_mb"] < 2000, out
    first = path.open().readline().split("\t")
    assert out["first"][0] == first[0]
