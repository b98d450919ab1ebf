"""Atomic writing (ddrm.io): nothing half-written, and the permissions a plain write would give."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from ddrm.cli import main
from ddrm.io import atomic_dir, atomic_open, atomic_path, file_lock


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def umask_027():
    old = os.umask(0o027)
    yield
    os.umask(old)


def test_a_new_file_or_folder_gets_the_umask_permissions_not_owner_only(tmp_path, umask_027):
    with atomic_open(tmp_path / "a.json", "w") as fh:
        fh.write("{}")
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "folder") as d:
        (d / "train.csv").write_text("u,i\n")
    assert _mode(tmp_path / "a.json") == 0o640 and _mode(tmp_path / "b.bin") == 0o640  # 0o666 & ~0o027
    assert _mode(tmp_path / "folder") == 0o750
    assert (tmp_path / "a.json").read_text() == "{}" and (tmp_path / "folder" / "train.csv").is_file()


def test_a_replaced_file_keeps_its_permissions_and_a_failed_write_leaves_it_whole(tmp_path, umask_027):
    path = tmp_path / "results.md"
    path.write_text("old")
    path.chmod(0o604)
    with atomic_open(path, "w") as fh:
        fh.write("new")
    assert path.read_text() == "new" and _mode(path) == 0o604
    with pytest.raises(RuntimeError), atomic_open(path, "w") as fh:
        fh.write("half")
        raise RuntimeError("interrupted")
    assert path.read_text() == "new" and _mode(path) == 0o604
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.md"]  # no temporary file left


def test_a_commands_outputs_are_readable_by_the_group_under_umask_022(tmp_path, capsys):
    old = os.umask(0o022)
    try:
        assert main(["pretrain", "--data", "synthetic", "--set", "backend.name=mf", "--set", "train.epochs=1",
                     "--set", "data.synthetic.n_users=60", "--set", "data.synthetic.n_items=40", "--set", "data.synthetic.mean_items=8",
                     "--output", str(tmp_path / "run"), "--quiet"]) == 0
    finally:
        os.umask(old)
    capsys.readouterr()
    written = [p for p in (tmp_path / "run").rglob("*") if p.is_file()]
    assert written and all(_mode(p) == 0o644 for p in written), {p.name: oct(_mode(p)) for p in written}


def test_file_lock_is_exclusive_and_says_at_once_when_it_is_held(tmp_path):
    path = tmp_path / "cell.lock"
    with file_lock(path) as held:
        assert held
        with file_lock(path, wait=False) as other:  # another open file: another holder, as another process would be
            assert other is False
    with file_lock(path, wait=False) as again:  # let go at the end of the block
        assert again


def test_run_log_takes_info_without_showing_it_where_the_callers_setup_did_not(tmp_path):
    import io
    import logging

    from ddrm.runs import run_log

    stream = io.StringIO()
    root, ddrm_logger = logging.getLogger(), logging.getLogger("ddrm")
    handler = logging.StreamHandler(stream)  # a caller's setup: a plain handler, the root at WARNING
    old = root.level, ddrm_logger.level, ddrm_logger.propagate
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    try:
        with run_log(tmp_path, "pretrain", resume=False):
            logging.getLogger("ddrm.training").info("epoch 2: valid 0.5")
            logging.getLogger("ddrm.training").warning("a warning")
        logging.getLogger("ddrm.training").info("after the run")
    finally:
        root.removeHandler(handler)
        root.setLevel(old[0])
    assert (ddrm_logger.level, ddrm_logger.propagate) == old[1:]  # restored
    shown, kept = stream.getvalue(), (tmp_path / "run.log").read_text()
    assert "a warning" in shown and "epoch 2" not in shown and "run folder" not in shown
    assert "epoch 2: valid 0.5" in kept and "a warning" in kept and "after the run" not in kept
