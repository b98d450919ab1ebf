"""The benchmark scripts that carry arithmetic of their own, run once on tiny shapes."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _grid_module(monkeypatch):
    """benchmarks/tune_grid.py imported as a module (it is a script, not part of the package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tune_grid", BENCH / "tune_grid.py")
    grid_mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "tune_grid", grid_mod)  # dataclasses look their module up there
    spec.loader.exec_module(grid_mod)
    return grid_mod


def test_bench_floor_counts_the_denoiser_matmuls():
    out = subprocess.run([sys.executable, str(BENCH / "bench_floor.py"), "--dims", "4", "8", "--dim", "3",
                          "--batch", "16", "--triples", "40", "--reps", "1", "--rounds", "2"],
                         capture_output=True, text=True, check=True, cwd=BENCH)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert [r["bf16"] for r in res["runs"]] == [False, True]
    for run in res["runs"]:
        # GEMMs 6->8 (the first layer takes [x_t, cond]), 8->4, 4->8, 8->3: forward and weight gradient for all
        # four, input gradient for the last three (the first layer's inputs are frozen embeddings)
        layers = [(m["layer"], m["kind"]) for m in run["matmuls"]]
        assert layers == [("6->8", "forward"), ("6->8", "weight_grad"),
                          ("8->4", "forward"), ("8->4", "weight_grad"), ("8->4", "input_grad"),
                          ("4->8", "forward"), ("4->8", "weight_grad"), ("4->8", "input_grad"),
                          ("8->3", "forward"), ("8->3", "weight_grad"), ("8->3", "input_grad")]
        macs = 2 * (48 + 32 + 32 + 24) + (32 + 32 + 24)  # per row, one denoiser
        assert abs(run["gflop_per_step"] - 2 * 2 * 16 * macs / 1e9) < 1e-9
        steps = 3  # ceil(40 / 16)
        assert abs(run["epoch_s_matmul_floor"] - round(run["matmul_ms_per_step"] * steps / 1e3, 2)) < 0.011
        assert run["step_ms"] > 0 and run["fixed_ms_per_step"] > 0
        assert len(run["step_to_floor_by_round"]) == 2
        assert min(run["step_to_floor_by_round"]) <= run["step_to_floor"] <= max(run["step_to_floor_by_round"])
    assert isinstance(res["bf16_auto"]["bf16"], bool) and res["bf16_auto"]["fp32_ms"] > 0


def test_bench_tune_times_each_trial(tmp_path):
    import pytest

    pytest.importorskip("optuna")
    out = subprocess.run([sys.executable, str(BENCH / "bench_tune.py"), "--models", "ease", "mostpop", "--trials", "2",
                          "--data", "synthetic"], capture_output=True, text=True, check=True, cwd=BENCH)
    res = json.loads(out.stdout.strip().splitlines()[-1])
    rows = {r["model"]: r for r in res["results"]}
    assert rows["ease"]["trials"] == 2 and rows["ease"]["complete"]["n"] == 2 and rows["mostpop"]["trials"] == 1
    assert 0 < rows["ease"]["complete"]["min_s"] <= rows["ease"]["complete"]["max_s"]
    assert rows["ease"]["complete"]["cpu_n"] == 2 and rows["ease"]["complete"]["cpu_mean_s"] > 0
    again = json.loads(subprocess.run([sys.executable, str(BENCH / "bench_tune.py"), "--studies",
                                       str(Path(__file__).resolve().parents[1] / "nonexistent")],
                                      capture_output=True, text=True, check=True, cwd=BENCH).stdout)
    assert again["results"] == []
    # the same summary from a study's committed records (trials that ran on another machine)
    studies = tmp_path / "studies"
    from ddrm.tuning.records import export_studies
    from ddrm.tuning.storage import open_storage

    folder = tmp_path / "ease"
    assert subprocess.run([sys.executable, "-m", "ddrm", "tune", "--model", "ease", "--data", "synthetic", "--trials",
                           "2", "--no-final", "--output", str(folder), "--quiet", "--json"],
                          capture_output=True, text=True).returncode == 0
    studies.mkdir()
    export_studies(open_storage(None, folder), studies / "ease.jsonl")
    from_records = json.loads(subprocess.run([sys.executable, str(BENCH / "bench_tune.py"), "--studies", str(studies)],
                                             capture_output=True, text=True, check=True, cwd=BENCH).stdout)
    [row] = from_records["results"]
    csv_row = json.loads(subprocess.run([sys.executable, str(BENCH / "bench_tune.py"), "--studies", str(tmp_path)],
                                        capture_output=True, text=True, check=True, cwd=BENCH).stdout)["results"]
    [same] = [r for r in csv_row if r["model"] == "ease"]
    assert row["model"] == "ease" and row["trials"] == 2 and row["complete"]["n"] == 2
    assert row["complete"]["mean_s"] == pytest.approx(same["complete"]["mean_s"], abs=0.01)  # the csv rounds to 0.01 s
    assert row["best_valid"] == pytest.approx(same["best_valid"], rel=1e-9)


def test_tune_grid_fills_every_study_with_shared_workers_and_resumes(tmp_path, capsys, monkeypatch):
    """Two studies, two workers each: both budgets filled, one final refit each; a rerun adds nothing."""
    import pytest

    pytest.importorskip("optuna")
    tiny = ["data.synthetic.n_users=120", "data.synthetic.n_items=60", "data.synthetic.mean_items=10"]
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"trials": 3, "studies": [
        # listed first, started last: DDRM waits for the MF study's best.yaml, the backend it trains on
        {"dataset": "synthetic", "model": "ddrm", "backbone": "synthetic/mf-small",
         "set": [*tiny, "train.epochs=1", "train.eval_every=1"]},
        {"dataset": "synthetic", "model": "ease", "set": tiny},
        {"dataset": "synthetic", "model": "mostpop", "set": tiny},  # nothing to tune: a budget of one trial
        {"dataset": "synthetic", "model": "mf", "name": "mf-small",
         "set": [*tiny, "train.epochs=4", "train.eval_every=2", "backend.dim=8"]}]}))
    cmd = [sys.executable, str(BENCH / "tune_grid.py"), "--grid", str(grid), "--runs", str(tmp_path / "runs"),
           "--workers", "2", "--parallel", "2", "--records", str(tmp_path / "records")]
    first = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    rows = {r["study"]: r for r in first["studies"]}
    assert set(rows) == {"synthetic/ddrm", "synthetic/ease", "synthetic/mostpop", "synthetic/mf-small"}
    import yaml

    ddrm, mf = (yaml.safe_load((tmp_path / "runs" / n / "best.yaml").read_text()) for n in ("synthetic/ddrm",
                                                                                           "synthetic/mf-small"))
    assert ddrm["backend"] == mf["backend"] and ddrm["pretrain"] == mf["train"]
    # --install: each best.yaml becomes configs/<dataset>/tuned/<name>.yaml naming itself; DDRM's drops the checkpoint
    # of the backend its study trained (left behind in runs/), so its backend section refits the backbone
    install = [*cmd[:6], "--install", str(tmp_path / "configs")]
    out = subprocess.run(install, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stderr.count("wrote") == 4
    installed = tmp_path / "configs" / "synthetic" / "tuned" / "ddrm.yaml"
    text = installed.read_text()
    assert f"# run it with: ddrm train --config {installed}   (the backbone is refitted" in text
    assert "backend_checkpoint" in ddrm and "backend_checkpoint" not in yaml.safe_load(text)
    assert yaml.safe_load(text)["backend"] == mf["backend"]
    installed.write_text(text + "# edited\n")
    out = subprocess.run(install, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stderr.count("kept the existing") == 4 and installed.read_text().endswith("# edited\n")
    # a fresh clone: no runs folder, the trial records and the installed configs. --status reads the records; a run
    # loads them (no trial runs again), trains DDRM's backbone from its installed config and refits the one study
    # that has no installed config
    fresh = [*cmd[:4], "--runs", str(tmp_path / "fresh"), "--records", str(tmp_path / "records"),
             "--configs", str(tmp_path / "configs")]
    status = json.loads(subprocess.run([*fresh, "--status"], capture_output=True, text=True, check=True).stdout)
    assert [{**r, "best_yaml": True, "installed": False} for r in status["studies"]] == first["studies"]
    assert all(r["installed"] for r in status["studies"]) and not any(r["installed"] for r in first["studies"])
    installed.unlink()
    (tmp_path / "records" / "synthetic" / "mostpop.jsonl").unlink()  # tuned before the records: only its config
    out = subprocess.run(fresh, capture_output=True, text=True, check=True, cwd=tmp_path)
    assert all(f"synthetic/{n}: " in out.stderr for n in ("ddrm", "ease", "mf-small")), out.stderr
    assert out.stderr.count(" trials loaded from ") == 3
    assert "synthetic/mostpop: skipped, its tuned config" in out.stderr
    assert not (tmp_path / "fresh" / "synthetic" / "mostpop").exists()  # not tuned again
    assert sorted(p.name for p in (tmp_path / "fresh" / "synthetic" / "ddrm").glob("*.log")) == ["final.log"]
    assert not (tmp_path / "fresh" / "synthetic" / "ease" / "best.yaml").exists()  # installed: not refitted
    refit = yaml.safe_load((tmp_path / "fresh" / "synthetic" / "ddrm" / "best.yaml").read_text())
    assert refit["backend"] == mf["backend"] and refit["pretrain"] == mf["train"]
    result = json.loads((tmp_path / "fresh" / "synthetic" / "ddrm" / "result.json").read_text())
    assert result["refit_valid"] == pytest.approx(rows["synthetic/ddrm"]["best_valid"], rel=1e-4)
    # a study folder with fewer trials than its records (an old copy) does not overwrite them
    from ddrm.tuning.records import import_studies

    grid_mod = _grid_module(monkeypatch)
    record = tmp_path / "records" / "synthetic" / "ease.jsonl"
    kept = record.read_text()
    short = tmp_path / "short.jsonl"
    short.write_text("\n".join(kept.splitlines()[:3]) + "\n")  # the format and study lines, one trial
    (tmp_path / "old" / "synthetic" / "ease").mkdir(parents=True)
    import_studies(short, f"sqlite:///{tmp_path / 'old' / 'synthetic' / 'ease' / 'study.db'}")
    capsys.readouterr()
    grid_mod.save(grid_mod.Study("synthetic", "ease", "ease"), tmp_path / "old", tmp_path / "records")
    assert record.read_text() == kept
    n = kept.count('"kind": "trial"')
    assert f"keeps {n} trials, {tmp_path / 'old' / 'synthetic' / 'ease' / 'study.db'} has 1; not overwritten" in (
        capsys.readouterr().err)
    for name, row in rows.items():
        assert row["finished"] >= (1 if "mostpop" in name else 3) and row["running"] == 0 and row["best_yaml"], row
        result = json.loads((tmp_path / "runs" / name / "result.json").read_text())
        assert result["best"]["valid"] == pytest.approx(row["best_valid"]) and "test" in result["metrics"]
        assert (tmp_path / "runs" / name / "worker1.log").is_file()  # the second worker ran
    again = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True, cwd=tmp_path).stdout)
    assert again["studies"] == first["studies"]
    bad = tmp_path / "bad.yaml"
    bad.write_text("studies: [{model: ease}]\n")
    out = subprocess.run([*cmd[:2], "--grid", str(bad), "--status"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "studies[0] must have dataset and model" in out.stderr
    bad.write_text(json.dumps({"studies": [{"dataset": "synthetic", "model": "ddrm", "backbone": "synthetic/mf"}]}))
    out = subprocess.run([*cmd[:2], "--grid", str(bad), "--status"], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 1 and "backbone 'synthetic/mf', which is not a study of the grid" in out.stderr
    # run alone, a study whose backbone has no best.yaml is skipped with a sentence instead of waiting for ever
    out = subprocess.run([*cmd[:4], "--runs", str(tmp_path / "other"), "--only", "synthetic/ddrm", "--records", "none"],
                         capture_output=True,
                         text=True, cwd=tmp_path, timeout=120)
    assert out.returncode == 0 and "synthetic/ddrm: skipped, its backbone synthetic/mf-small" in out.stderr
    assert json.loads(out.stdout)["studies"] == [{"study": "synthetic/ddrm", "finished": 0, "running": 0,
                                                  "best_valid": None, "best_yaml": False, "installed": False,
                                                  "waiting_for": "synthetic/mf-small"}]


def _tune_grid_long_study(tmp_path: Path) -> list[str]:
    """A grid command over one study of 50 long MF trials (2000 epochs each), two workers."""
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"trials": 50, "studies": [{"dataset": "synthetic", "model": "mf", "set": [
        "data.synthetic.n_users=300", "data.synthetic.n_items=200", "train.epochs=2000", "train.eval_every=500",
        "train.patience=1000"]}]}))
    return [sys.executable, str(BENCH / "tune_grid.py"), "--grid", str(grid), "--runs", str(tmp_path / "runs"),
            "--workers", "2", "--records", str(tmp_path / "records")]


def test_tune_grid_stops_its_workers_at_the_deadline(tmp_path):
    """--minutes: every worker is stopped (SIGTERM, then SIGKILL after --grace); no final refit of an open study."""
    import time

    import pytest

    pytest.importorskip("optuna")
    t0 = time.monotonic()
    out = subprocess.run([*_tune_grid_long_study(tmp_path), "--minutes", "0.1", "--grace", "0.05"],
                         capture_output=True, text=True, check=True, cwd=tmp_path, timeout=120)
    assert time.monotonic() - t0 < 60  # 6 s + 3 s grace + start-up, not 50 long trials
    row = json.loads(out.stdout)["studies"][0]
    assert row["finished"] < 50 and not row["best_yaml"]


def test_tune_grid_sent_sigterm_stops_its_workers_instead_of_leaving_them_running(tmp_path):
    """SIGTERM to the grid process (kill PID, a job scheduler's stop): it passes SIGTERM on to every worker, whose
    trial keeps its training state, waits for them, writes its JSON and exits 143. Before, the grid died alone and
    its workers went on with their trials."""
    import signal
    import sqlite3
    import time

    import pytest

    pytest.importorskip("optuna")
    proc = subprocess.Popen(_tune_grid_long_study(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=tmp_path)
    db = tmp_path / "runs" / "synthetic" / "mf" / "study.db"
    running, t0 = 0, time.monotonic()
    while running < 2 and time.monotonic() - t0 < 90:  # both workers inside a trial (their signal handlers set)
        time.sleep(0.5)
        if db.is_file():
            with contextlib.suppress(sqlite3.OperationalError), contextlib.closing(sqlite3.connect(db)) as con:
                running = con.execute("SELECT COUNT(*) FROM trials WHERE state = 'RUNNING'").fetchone()[0]
    assert running == 2, proc.kill() or proc.communicate()[1]
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 143, err
    assert json.loads(out)["studies"][0]["finished"] < 50
    logs = sorted(db.parent.glob("worker*.log"))
    assert len(logs) == 2 and all("tuning stopped by SIGTERM" in log.read_text() for log in logs)
    assert len(list((db.parent / "trial-states").glob("*.pt"))) == 2  # each stopped trial's state, kept


def test_tune_grid_only_picks_a_named_study_alone_and_others_by_substring(monkeypatch):
    """--only: a full DATASET/NAME is that study alone; a word every study containing it; a miss one sentence."""
    import pytest

    grid_mod = _grid_module(monkeypatch)
    names = ["sgl", "sgl-tce", "sgl-rce", "lightgcn", "lightgcn-tce", "ddrm-sgl"]
    studies = [grid_mod.Study(dataset=d, model=n.split("-")[0], name=n) for d in ("a", "b") for n in names]

    def ids(only):
        return [f"{s.dataset}/{s.name}" for s in grid_mod.select(studies, only)]

    assert ids(["a/sgl"]) == ["a/sgl"]
    assert ids(["a/sgl", "b/lightgcn-"]) == ["a/sgl", "b/lightgcn-tce"]
    assert ids(["a/sgl-"]) == ["a/sgl-tce", "a/sgl-rce"]
    assert ids(["lightgcn"]) == ["a/lightgcn", "a/lightgcn-tce", "b/lightgcn", "b/lightgcn-tce"]
    assert ids(["b/"]) == [f"b/{n}" for n in names]  # a dataset's studies
    with pytest.raises(SystemExit, match="--only c/sgl: no study"):
        grid_mod.select(studies, ["c/sgl"])


def test_tune_grid_starts_the_studies_closest_to_their_budget_first(monkeypatch):
    grid_mod = _grid_module(monkeypatch)
    studies = [grid_mod.Study(dataset="a", model="mf", name=n) for n in "wxyz"]
    queue = grid_mod.work_queue(studies, [5, 0, 2, 5], workers=2)
    assert [(s.name, w) for s, w in queue] == [("y", 0), ("y", 1), ("w", 0), ("w", 1), ("z", 0), ("z", 1)]


def test_tune_grid_refits_a_full_study_before_starting_the_next(tmp_path):
    """One process at a time: MF's refit (its best.yaml is what a DDRM study would wait for) comes before EASE's
    workers, not after every study's workers."""
    import pytest

    pytest.importorskip("optuna")
    tiny = ["data.synthetic.n_users=80", "data.synthetic.n_items=40", "data.synthetic.mean_items=8"]
    grid = tmp_path / "grid.yaml"
    grid.write_text(json.dumps({"trials": 2, "studies": [
        {"dataset": "synthetic", "model": "mf", "set": [*tiny, "train.epochs=2", "train.eval_every=1",
                                                        "backend.dim=4"]},
        {"dataset": "synthetic", "model": "ease", "set": tiny}]}))
    out = subprocess.run([sys.executable, str(BENCH / "tune_grid.py"), "--grid", str(grid), "--runs",
                          str(tmp_path / "runs"), "--parallel", "1", "--records", "none"],
                         capture_output=True, text=True, check=True, cwd=tmp_path)
    started = [line.split()[1] + " " + line.split()[3] for line in out.stderr.splitlines() if ": started " in line]
    assert started == ["synthetic/mf: worker0", "synthetic/mf: final", "synthetic/ease: worker0",
                       "synthetic/ease: final"]


def test_tune_grid_gives_each_worker_its_share_of_the_cores_and_never_more_than_omp_num_threads(monkeypatch):
    grid_mod = _grid_module(monkeypatch)
    assert grid_mod.worker_threads(16, 4) == 4
    assert grid_mod.worker_threads(2, 1) == 2
    assert grid_mod.worker_threads(2, 4) == 1
    assert grid_mod.worker_threads(2, 1, omp="1") == 1  # started under OMP_NUM_THREADS=1: each worker keeps 1
    assert grid_mod.worker_threads(16, 2, omp="4") == 4
    assert grid_mod.worker_threads(16, 2, omp="") == 8  # unset or not a number: the share
    assert grid_mod.worker_threads(2, 1, threads=3, omp="1") == 3  # --threads wins
