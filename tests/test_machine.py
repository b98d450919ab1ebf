from __future__ import annotations

import sys

import pytest

from ddrm.machine import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt is Linux-only")
def test_keep_freed_memory_applies_on_glibc_and_respects_user_settings(monkeypatch):
    assert keep_freed_memory() is True
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert keep_freed_memory() is False  # the user's own malloc settings win


def test_machine_info_describes_this_process_and_feeds_the_results_line():
    import os

    import torch

    from ddrm.experiments.results import machine_line
    from ddrm.machine import machine_info

    m = machine_info()
    assert m["torch"] == torch.__version__ and m["threads"] == torch.get_num_threads()
    assert m["logical_cpus"] == os.cpu_count() and (m["cuda"] is None) == (not torch.cuda.is_available())
    line = machine_line()
    assert line.startswith(f"{m['cpu']}, {m['logical_cpus']} logical CPUs") and f"torch {m['torch']}" in line


def test_describe_code_names_the_commit_of_a_ddrm_checkout_and_only_of_one(tmp_path):
    """Version + commit in ddrm's own checkout, '.dirty' once the package's files change (not when other files of
    the checkout do); the version alone for a package that is not src/ddrm of its repository."""
    import shutil
    import subprocess

    from ddrm.machine import describe_code

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args: str) -> str:
        return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                              capture_output=True, text=True).stdout.strip()

    package = tmp_path / "src" / "ddrm"
    package.mkdir(parents=True)
    (package / "model.py").write_text("x = 1\n")
    (tmp_path / "RESULTS.md").write_text("numbers\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "first")
    commit = git("rev-parse", "--short=12", "HEAD")
    assert describe_code(package, "0.1.0") == f"0.1.0+{commit}"
    (tmp_path / "RESULTS.md").write_text("new numbers\n")  # results written by a run: the code is unchanged
    assert describe_code(package, "0.1.0") == f"0.1.0+{commit}"
    (package / "model.py").write_text("x = 2\n")
    assert describe_code(package, "0.1.0") == f"0.1.0+{commit}.dirty"
    other = tmp_path / "lib" / "ddrm"  # a package inside some other repository (a venv in a user's project)
    other.mkdir(parents=True)
    assert describe_code(other, "0.1.0") == "0.1.0"


def test_code_version_is_this_checkouts_commit():
    import subprocess
    from pathlib import Path

    import ddrm
    from ddrm.machine import code_version

    v = code_version()
    assert v.startswith(ddrm.__version__)
    src = Path(ddrm.__file__).resolve().parent
    head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=src, capture_output=True, text=True)
    top = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=src, capture_output=True, text=True)
    if head.returncode != 0 or Path(top.stdout.strip()).resolve() / "src" / "ddrm" != src:
        assert v == ddrm.__version__  # installed from a wheel, or not run from a checkout
    else:
        assert v.removesuffix(".dirty") == f"{ddrm.__version__}+{head.stdout.strip()}"


def _moving_head(monkeypatch, module, target: str):
    """A stand-in for ``code_version`` (cached, as the real one) whose commit moves when ``module.target`` is first
    called: a commit landing in the checkout while a command runs its cells or trials."""
    import functools

    head = {"commit": "0.1.0+started"}
    monkeypatch.setattr(module, "code_version", functools.cache(lambda: head["commit"]))
    real = getattr(module, target)

    def moved(*args, **kwargs):
        head["commit"] = "0.1.0+committed-meanwhile"
        return real(*args, **kwargs)

    monkeypatch.setattr(module, target, moved)


def test_cells_and_trials_record_the_code_of_when_their_command_started(monkeypatch, tmp_path, capsys):
    import json

    from ddrm.cli import main
    from ddrm.experiments import cells

    _moving_head(monkeypatch, cells, "run_cell")
    out = tmp_path / "t"
    assert main(["experiment", "table", "--quick", "--seeds", "1", "--backends", "mf", "--methods", "backend",
                 "--baselines", "mostpop", "--output", str(out), "--json", "--quiet"]) == 0
    capsys.readouterr()
    recorded = {json.loads(f.read_text())["code"] for f in out.glob("cells/*/*/seed0/metrics.json")}
    assert recorded == {"0.1.0+started"}

    pytest.importorskip("optuna")
    from ddrm.tuning import study

    _moving_head(monkeypatch, study, "trial_config")
    assert main(["tune", "--model", "ease", "--data", "synthetic", "--set", "data.synthetic.n_users=100",
                 "--set", "data.synthetic.n_items=50",
                 "--set", "data.synthetic.mean_items=10", "--trials", "2", "--output", str(tmp_path / "o"),
                 "--json", "--quiet"]) == 0
    rows = (tmp_path / "o" / "trials.csv").read_text().splitlines()
    assert len(rows) == 3 and all(",0.1.0+started," in r for r in rows[1:])
