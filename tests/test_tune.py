"""ddrm tune: pruning, resumption, the best config reproducing its trial, several workers, bad inputs."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch

from ddrm.cli import main
from ddrm.errors import ConfigError
from ddrm.machine import code_version, where_run
from ddrm.tuning import load_space, model_names, shipped_spaces
from ddrm.tuning.objective import resolve_model

pytest.importorskip("optuna")

TINY = ["--data", "synthetic", "--set", "data.synthetic.n_users=200", "--set", "data.synthetic.n_items=100",
        "--set", "data.synthetic.mean_items=12"]
MF = [*TINY, "--set", "train.epochs=8", "--set", "train.eval_every=1", "--set", "train.patience=8",
      "--set", "backend.dim=16"]


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _tune(args: list[str], capsys) -> dict:
    assert main(["tune", *args, "--json", "--quiet"]) == 0
    return json.loads(capsys.readouterr().out)


def test_trained_model_trials_are_pruned_and_best_yaml_reproduces_the_trial(tmp_path, capsys):
    out = tmp_path / "mf"
    p = _tune(["--model", "mf", *MF, "--trials", "10", "--output", str(out)], capsys)
    rows = _rows(out / "trials.csv")
    assert len(rows) == 10 and p["trials"]["complete"] + p["trials"]["pruned"] == 10
    pruned = [r for r in rows if r["state"] == "pruned"]
    assert pruned and all(int(r["pruned_at_epoch"]) < 8 for r in pruned)  # stopped before the last epoch
    complete = [r for r in rows if r["state"] == "complete"]
    assert p["best"]["valid"] == pytest.approx(max(float(r["value"]) for r in complete))
    assert p["refit_valid"] == pytest.approx(p["best"]["valid"], rel=1e-6)
    assert {r["machine"] for r in rows} == {where_run("cpu")}  # whose seconds these are
    assert {r["code"] for r in rows} == {code_version()}  # and whose code computed their values
    assert all(float(r["cpu_seconds"]) > 0 for r in rows)  # the trial's work, whatever share of the machine it got
    # patience 8 = epochs: every complete trial trains 8 epochs, and is flagged iff its best validation is the 8th
    assert all(1 <= int(r["best_epoch"]) <= 8 and (r["still_improving"] == "1") == (r["best_epoch"] == "8")
               for r in complete)
    capped = [int(r["number"]) for r in complete if r["still_improving"] == "1"]
    assert p.get("still_improving", []) == capped
    best_capped = p["best"]["number"] in capped
    assert p["best"].get("still_improving", False) == best_capped
    assert ("ended at its epoch cap still improving" in (out / "best.yaml").read_text()) == best_capped
    # the refitted model is kept: evaluating it gives the refit's numbers without training again
    assert p["best_checkpoint"] == str(out / "best.pt") and f"# the refitted model: {out / 'best.pt'}" in (
        out / "best.yaml").read_text()
    assert main(["evaluate", "--checkpoint", p["best_checkpoint"], "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert ev["metrics"]["valid"]["recall@20"] == p["refit_valid"]
    assert ev["metrics"]["test"]["recall@20"] == p["metrics"]["test"]["recall@20"]
    # ... and DDRM starts from it as its backend_checkpoint, without training the backbone again
    assert main(["train", *TINY, "--set", f"backend_checkpoint={out / 'best.pt'}", "--set", "train.epochs=1",
                 "--set", f"output={tmp_path / 'ddrm'}", "--json", "--quiet"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["backend_metrics"]["valid"]["recall@20"] == p["refit_valid"]
    assert set(p["metrics"]) == {"valid", "test"} and (out / "importance.png").stat().st_size > 1000
    # the best config is a complete 'ddrm pretrain' config reproducing the best trial's validation metric
    assert main(["pretrain", "--config", str(out / "best.yaml"), "--output", str(tmp_path / "run"), "--json",
                 "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["metrics"]["valid"]["recall@20"] == pytest.approx(p["best"]["valid"], rel=1e-6)
    assert again["metrics"]["test"]["recall@20"] == pytest.approx(p["metrics"]["test"]["recall@20"], rel=1e-6)


@pytest.mark.parametrize("pruner", ["median", "halving"])
def test_prune_after_spares_every_trial_until_that_epoch(tmp_path, capsys, pruner):
    out = tmp_path / "mf"
    p = _tune(["--model", "mf", *MF, "--trials", "8", "--pruner", pruner, "--prune-after", "6", "--output", str(out)],
              capsys)
    rows = _rows(out / "trials.csv")
    assert p["prune_after"] == 6 and len(rows) == 8
    pruned = [int(r["pruned_at_epoch"]) for r in rows if r["state"] == "pruned"]
    assert pruned and min(pruned) >= 6, pruned
    assert f"pruner {pruner} from epoch 6," in (out / "best.yaml").read_text()
    # the study's trials ran under these settings: continuing it under others is refused, nothing run or written
    before = (out / "trials.csv").read_bytes()
    for flags, said in [(["--pruner", "none" if pruner == "median" else "median", "--prune-after", "6"],
                         f"was run with --pruner {pruner}, not "),
                        (["--pruner", pruner], "was run with --prune-after 6, not 0: pass --prune-after 6")]:
        assert main(["tune", "--model", "mf", *MF, "--trials", "9", *flags, "--output", str(out), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1, err
    assert (out / "trials.csv").read_bytes() == before


def test_resume_continues_the_same_study_without_replaying_trials(tmp_path, capsys):
    out = tmp_path / "ease"
    first = _tune(["--model", "ease", *TINY, "--trials", "3", "--output", str(out)], capsys)
    rows3 = _rows(out / "trials.csv")
    second = _tune(["--model", "ease", *TINY, "--trials", "6", "--output", str(out)], capsys)
    rows6 = _rows(out / "trials.csv")
    assert first["trials"]["complete"] == 3 and second["trials"]["complete"] == 6
    assert rows6[:3] == rows3  # the finished trials are kept as they were
    assert len({r["reg"] for r in rows6}) == 6  # the resumed process did not replay the first start points
    assert second["best"]["valid"] >= first["best"]["valid"]
    # a finished budget runs no new trial
    third = _tune(["--model", "ease", *TINY, "--trials", "6", "--output", str(out)], capsys)
    assert third["trials"]["complete"] == 6
    # the baseline config reloads and gives the best trial's validation metric
    assert main(["baseline", "ease", "--config", str(out / "best.yaml"), "--json", "--quiet"]) == 0
    base = json.loads(capsys.readouterr().out)
    assert base["metrics"]["valid"]["recall@20"] == pytest.approx(second["best"]["valid"], rel=1e-6)
    # and the refitted best baseline is kept as a checkpoint, which evaluates to the same numbers
    assert third["best_checkpoint"] == str(out / "best.pt")
    assert main(["evaluate", "--checkpoint", str(out / "best.pt"), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == base["metrics"]


def test_ctrl_c_keeps_the_running_trials_state_and_the_rerun_continues_it_bit_identically(tmp_path, capsys):
    """SIGINT mid-trial saves the trial's training state and stops at once; the trial is failed (said to be
    interrupted) and its parameters enqueued; the rerun continues that state, after replaying its validations to the
    pruner, and ends exactly where an uninterrupted trial of the same parameters ends. The refit of the best trial
    is stopped and continued the same way, and still reproduces the trial exactly."""
    import optuna

    long = [*MF, "--set", "train.epochs=60", "--set", "train.patience=100", "--pruner", "none", "--no-final"]
    ref = _tune(["--model", "mf", *long, "--trials", "1", "--output", str(tmp_path / "ref")], capsys)
    out = tmp_path / "mf"
    cmd = [sys.executable, "-m", "ddrm", "tune", "--model", "mf", *long, "--trials", "1", "--output", str(out),
           "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(out.glob("trial-states/*.pt")):
        time.sleep(0.01)  # the state appears after the trial's first epoch of 60
    assert proc.poll() is None, "the trial ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "during trial 0, whose training state is kept" in err and "Traceback" not in err
    rows = _rows(out / "trials.csv")
    assert [r["state"] for r in rows] == ["fail", "waiting"] and rows[0]["error"].startswith("interrupted by SIGINT")
    assert len(list(out.glob("trial-states/*.pt"))) == 1 and not (out / "best.yaml").exists()
    state = next(out.glob("trial-states/*.pt"))  # as a state written before CPU seconds were counted
    payload = torch.load(state, weights_only=True)
    del payload["result"]["cpu_seconds"]
    torch.save(payload, state)

    p = _tune(["--model", "mf", *long, "--trials", "1", "--output", str(out)], capsys)
    assert p["trials"]["complete"] == 1 and p["trials"]["interrupted"] == 1 and p["trials"]["fail"] == 0
    assert p["best"]["valid"] == ref["best"]["valid"] and p["best"]["params"] == ref["best"]["params"]
    study = optuna.load_study(study_name=p["study"], storage=f"sqlite:///{out / 'study.db'}")
    done = study.best_trial
    first = optuna.load_study(study_name=ref["study"], storage=f"sqlite:///{tmp_path / 'ref' / 'study.db'}").trials[0]
    assert done.user_attrs["continues_trial"] == 0 and done.user_attrs["resumed_at_epoch"] > 1
    stopped = next(t for t in study.trials if t.number == 0)
    assert stopped.user_attrs["cpu_seconds"] > 0  # the continued trial's CPU seconds are unknown: not half of them
    assert "cpu_seconds" not in done.user_attrs and _rows(out / "trials.csv")[1]["cpu_seconds"] == ""
    assert done.intermediate_values == first.intermediate_values  # replayed, then reported as it went on
    assert not list(out.glob("trial-states/*.pt"))  # removed once the trial ended

    # the refit of the best trial (the study is full) is stopped and continued the same way
    refit = [*cmd[:cmd.index("--no-final")], *cmd[cmd.index("--no-final") + 1:]]
    refit[refit.index(str(out))] = str(tmp_path / "ref")
    proc = subprocess.Popen(refit, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(tmp_path.glob("ref/trial-states/*.pt")):
        time.sleep(0.01)
    assert proc.poll() is None, "the refit ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143 and "Run the same command again" in err, err
    assert not (tmp_path / "ref" / "best.yaml").exists()
    kept = next(tmp_path.glob("ref/trial-states/*.pt"))  # mark the stopped part as 1000 s long: refit_seconds adds it
    payload = torch.load(kept, weights_only=True)
    payload["result"]["seconds"] += 1000.0
    payload["result"]["cpu_seconds"] += 1000.0
    torch.save(payload, kept)
    assert main(["tune", "--model", "mf", *long[:long.index("--no-final")], "--trials", "1", "--output",
                 str(tmp_path / "ref"), "--json"]) == 0
    done, log = capsys.readouterr()
    assert "refit: continuing its training state" in log
    assert json.loads(done)["refit_valid"] == ref["best"]["valid"]  # bit-identical to the trial
    assert json.loads(done)["refit_seconds"] > 1000.0  # both parts of the refit, not the last one only
    assert json.loads(done)["refit_cpu_seconds"] > 1000.0
    assert not list(tmp_path.glob("ref/trial-states/*.pt"))


def test_the_refit_waits_for_trials_still_running_in_other_workers(tmp_path, capsys, monkeypatch):
    """The worker that refits must choose the best among all the budget's trials: one still running in another worker
    (here: added as running, finished 2 s later from another thread, best of all) is waited for, then refitted."""
    import threading

    import optuna

    from ddrm.tuning import storage as storage_mod

    out = tmp_path / "mf"
    common = ["--model", "mf", *MF, "--pruner", "none", "--trials", "3", "--output", str(out)]
    first = _tune([*common, "--no-final"], capsys)
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name=first["study"], storage=storage)
    best = study.best_trial
    study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.RUNNING, params=best.params,
                                              distributions=best.distributions))
    other = max(t.number for t in study.trials)
    monkeypatch.setattr(storage_mod, "RUNNING_POLL_SECONDS", 0.2)
    finisher = threading.Timer(2.0, lambda: study.tell(other, best.value + 0.5))  # the other worker ends it
    finisher.start()
    t0 = time.monotonic()
    try:
        done = _tune(common, capsys)
    finally:
        finisher.cancel()
    assert time.monotonic() - t0 >= 2.0  # it waited
    assert done["best"]["number"] == other and done["trials"]["complete"] == 4 and done["trials"]["running"] == 0
    assert (out / "best.yaml").is_file()


def test_two_workers_fill_one_sqlite_study(tmp_path):
    db = tmp_path / "shared.db"
    common = [sys.executable, "-m", "ddrm", "tune", "--model", "mf", *MF, "--set", "train.epochs=15",
              "--pruner", "none", "--trials", "8", "--storage", f"sqlite:///{db}", "--study", "shared",
              "--no-final", "--quiet", "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([*common, "--worker", str(w), "--output", str(tmp_path / f"w{w}")],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for w in (0, 1)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1] for o in outs]
    import optuna

    trials = optuna.load_study(study_name="shared", storage=f"sqlite:///{db}").trials
    finished = [t for t in trials if t.state.name == "COMPLETE"]
    assert 8 <= len(finished) <= 9  # the budget is the study's; a worker may finish one trial it had started
    assert {t.user_attrs["worker"] for t in finished} == {0, 1}
    assert len({t.params["train.lr"] for t in finished}) == len(finished)  # the workers' samplers differ


def test_workers_sharing_a_study_propose_apart_from_each_others_running_trials():
    """Trials still running in other workers count as bad results for the sampler (constant liar): four proposals
    made before any of them finishes spread out, where a sampler blind to them proposes four near-copies."""
    import numpy as np
    import optuna

    from ddrm.tuning.study import make_sampler

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dist = {"x": optuna.distributions.FloatDistribution(0.0, 1.0)}

    def spread(sampler) -> float:
        study = optuna.create_study(direction="maximize", sampler=sampler)
        for x in np.random.default_rng(0).uniform(0.0, 1.0, 12):  # finished trials; the best x is 0.3
            study.add_trial(optuna.trial.create_trial(params={"x": float(x)}, distributions=dist,
                                                      value=-(x - 0.3) ** 2))
        return float(np.std([study.ask(dist).params["x"] for _ in range(4)]))  # none told: all four running

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Optuna's ExperimentalWarning on some versions
        for seed in range(3):
            blind = optuna.samplers.TPESampler(seed=seed, n_startup_trials=5, multivariate=True, constant_liar=False)
            assert spread(make_sampler(optuna, seed, 20)) > 3 * spread(blind)


@pytest.mark.parametrize("args, message", [
    (["--model", "svd"], "unknown model 'svd'"),
    (["--model", "ease", "--space", "SPACE:params: {alpha: {type: float, low: 0.1, high: 1}}"],
     "unknown parameter 'alpha' for ease"),
    (["--model", "ease", "--space", "SPACE:params: {reg: {type: float, low: 10, high: 10}}"], "empty range"),
    (["--model", "mf", "--space", "SPACE:params: {train.lrr: {type: float, low: 0.1, high: 1}}"],
     "unknown parameter 'train.lrr'"),
    (["--model", "ddrm", "--space", "SPACE:params: {backend.reg: {type: float, low: 0.1, high: 1}}"],
     "stays fixed"),
    (["--model", "ease", "--storage", "sqlite:////nonexistent-folder/x/study.db"], "cannot open the study storage"),
    (["--model", "ease", "--storage", "postgresql://ddrm:secret@127.0.0.1:1/none"], "cannot open the study storage"),
    (["--model", "ease", "--trials", "0"], "--trials must be >= 1"),
    (["--model", "ease", "--stale-after", "1"], "--stale-after must be >= 2"),
    (["--model", "mf", "--prune-after", "-1"], "--prune-after must be >= 0 epochs"),
])
def test_bad_inputs_are_one_sentence_and_exit_2(tmp_path, capsys, args, message):
    args = list(args)
    for k, a in enumerate(args):
        if a.startswith("SPACE:"):
            path = tmp_path / "space.yaml"
            path.write_text(a[len("SPACE:"):])
            args[k] = str(path)
    assert main(["tune", *args, *TINY, "--output", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "secret" not in err


def test_include_config_runs_the_configs_own_values_once(tmp_path, capsys):
    """--include-config: the config's own values of the searched parameters run as a trial (once per study, resumed
    or not), with the validation score the same settings give outside the study; the best is never below it."""
    cfg = tmp_path / "ease.yaml"
    cfg.write_text("ease: {reg: 3.5}\n")
    out = tmp_path / "o"
    p = _tune(["--model", "ease", "--config", str(cfg), *TINY, "--trials", "3", "--include-config",
               "--output", str(out)], capsys)
    rows = _rows(out / "trials.csv")
    own = [r for r in rows if r["origin"] == "config"]
    assert len(own) == 1 and float(own[0]["reg"]) == 3.5 and own[0]["state"] == "complete"
    assert p["config_trial"] == {"number": int(own[0]["number"]), "state": "complete", "valid": float(own[0]["value"])}
    assert main(["baseline", "ease", *TINY, "--set", "reg=3.5", "--json", "--quiet"]) == 0
    alone = json.loads(capsys.readouterr().out)
    assert alone["metrics"]["valid"]["recall@20"] == pytest.approx(p["config_trial"]["valid"], rel=1e-6)
    assert p["best"]["valid"] >= p["config_trial"]["valid"]
    assert f"the config's own values (--include-config): trial {own[0]['number']}," in (out / "best.yaml").read_text()
    # resumed with the flag again: the study goes on to 5 trials without running the config's values twice
    p = _tune(["--model", "ease", "--config", str(cfg), *TINY, "--trials", "5", "--include-config",
               "--output", str(out)], capsys)
    rows = _rows(out / "trials.csv")
    assert len(rows) == 5 and sum(r["origin"] == "config" for r in rows) == 1
    # a trained model's values come from its run config, defaults filled in (the MF space's lr, reg, batch size)
    p = _tune(["--model", "mf", *MF, "--set", "train.lr=0.005", "--set", "backend.reg=0.001", "--trials", "1",
               "--include-config", "--output", str(tmp_path / "mf")], capsys)
    assert p["best"]["params"] == {"train.lr": 0.005, "backend.reg": 0.001, "train.batch_size": 2048}
    assert p["config_trial"]["number"] == p["best"]["number"] == 0


@pytest.mark.parametrize("setting, message", [
    ("ease.reg=0.5", "--include-config: the config's reg = 0.5 is outside the space's float range [1, 100000]"),
    ("ease.reg=fifty", "config key 'ease.reg' must be a number, got 'fifty'"),  # refused as a value first
])
def test_include_config_refuses_a_value_the_space_cannot_propose(tmp_path, capsys, setting, message):
    out = tmp_path / "o"
    assert main(["tune", "--model", "ease", *TINY, "--set", setting, "--include-config", "--output", str(out),
                 "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()  # nothing written


def test_space_encodes_config_values_as_optuna_stores_them():
    from ddrm.tuning.space import Param

    dims = Param("ddrm.dims", "categorical", choices=[[100, 1000], [512]])
    assert dims.encode((100, 1000), "x") == "[100, 1000]" and dims.decode(dims.encode([512], "x")) == [512]
    steps = Param("ddrm.steps", "categorical", choices=[5, 10])
    assert steps.encode(10.0, "x") == 10 and isinstance(steps.encode(10.0, "x"), int)
    flag = Param("flag", "categorical", choices=[True, False])
    with pytest.raises(ConfigError, match="flag = 1 is not among the space's choices"):
        flag.encode(1, "x")
    topk = Param("topk", "int", 10, 100, step=5)
    assert topk.encode(20, "x") == 20
    with pytest.raises(ConfigError, match=r"topk = 22 is outside the space's int range \[10, 100\] \(step 5\)"):
        topk.encode(22, "x")


def test_every_model_has_a_shipped_space_that_loads():
    from ddrm.tuning.objective import check_keys

    shipped = set(shipped_spaces())
    for name in model_names():
        spec = resolve_model(name)
        for part in spec.space_names:
            assert part in shipped, part
            space = load_space(Path(__file__).resolve().parents[1] / "configs" / "spaces" / f"{part}.yaml", part)
            check_keys(spec, [p.name for p in space.params], part)  # every key is one of that model's options
    with pytest.raises(ConfigError, match="'backend.ssl_ratio' for mf"):  # SGL's option is not MF's
        check_keys(resolve_model("mf"), ["backend.ssl_ratio"], "space")


def test_categorical_list_choices_reach_the_config(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("model: ddrm\nparams:\n  ddrm.dims: {type: categorical, choices: [[8], [16, 32]]}\n"
                     "  ddrm.steps: {type: int, low: 2, high: 4}\nfixed:\n  train.epochs: 2\n  train.eval_every: 1\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text("backend: {name: mf, dim: 8}\npretrain: {epochs: 2, eval_every: 1}\n")
    p = _tune(["--model", "ddrm", "--config", str(cfg), *TINY, "--space", str(space), "--trials", "3",
               "--output", str(tmp_path / "o")], capsys)
    assert p["best"]["params"]["ddrm.dims"] in ([8], [16, 32])
    import yaml

    best = yaml.safe_load((tmp_path / "o" / "best.yaml").read_text())
    assert best["ddrm"]["dims"] == p["best"]["params"]["ddrm.dims"] and best["train"]["epochs"] == 2
    assert Path(best["backend_checkpoint"]).is_file()  # the backend fitted once for every trial


def test_device_reaches_a_trained_baselines_trials_and_fit(tmp_path, capsys):
    """--device runs DiffRec's and Mult-VAE's training there (it once set only the trained backends' train.device,
    so a GPU grid trained them on the CPU); 'auto' is this machine's CPU here, and what the config records."""
    import yaml

    space = tmp_path / "s.yaml"
    space.write_text("model: multvae\nparams:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n"
                     "fixed:\n  epochs: 2\n  eval_every: 1\n  dims: [16]\n  latent: 4\n")
    p = _tune(["--model", "multvae", *TINY, "--space", str(space), "--trials", "2", "--device", "auto",
               "--output", str(tmp_path / "o")], capsys)
    assert p["trials"]["complete"] == 2
    assert yaml.safe_load((tmp_path / "o" / "best.yaml").read_text())["multvae"]["device"] == "auto"
    assert main(["baseline", "multvae", *TINY, "--set", "epochs=1", "--set", "dims=[8]", "--set", "latent=2",
                 "--device", "auto", "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["params"]["device"] == "auto"


def test_ddrm_on_a_tuned_backbone_trains_that_backend(tmp_path, capsys):
    import yaml

    mf = _tune(["--model", "mf", *MF, "--trials", "2", "--output", str(tmp_path / "mf")], capsys)
    backbone = tmp_path / "mf" / "best.yaml"
    space = tmp_path / "s.yaml"
    space.write_text("model: ddrm\nparams:\n  ddrm.steps: {type: int, low: 2, high: 4}\nfixed:\n  train.epochs: 1\n"
                     "  train.eval_every: 1\n  ddrm.dims: [8]\n")
    cfg = tmp_path / "c.yaml"  # another backbone and a checkpoint: both replaced by --backbone
    cfg.write_text("backend: {name: lightgcn, layers: 2}\nbackend_checkpoint: nowhere/backend.pt\n")
    _tune(["--model", "ddrm", "--config", str(cfg), "--backbone", str(backbone), *TINY, "--space", str(space),
           "--trials", "2", "--output", str(tmp_path / "d")], capsys)
    best, tuned = (yaml.safe_load(f.read_text()) for f in (tmp_path / "d" / "best.yaml", backbone))
    assert best["backend"] == tuned["backend"] and best["pretrain"] == tuned["train"]
    assert (tmp_path / "d" / "backend.pt").is_file() and not (tmp_path / "d" / "state-backend.pt").exists()
    assert not list((tmp_path / "d").glob("trial-states/*.pt"))  # every trial's and the refit's state removed
    assert main(["evaluate", "--checkpoint", best["backend_checkpoint"], "--json", "--quiet"]) == 0
    ev = json.loads(capsys.readouterr().out)  # the backend trained here is the tuned one: its validation metric
    assert ev["metrics"]["valid"]["recall@20"] == pytest.approx(mf["refit_valid"], rel=1e-6)
    # the same for ddrm train; a file without a backend section, or a model that has no backend, is one sentence
    assert main(["train", "--config", str(cfg), "--backbone", str(backbone), *TINY, "--set", "train.epochs=1",
                 "--set", "ddrm.dims=[8]", "--output", str(tmp_path / "t"), "--json", "--quiet"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["backend"] == "mf" and run["backend_metrics"]["valid"]["recall@20"] == pytest.approx(
        mf["refit_valid"], rel=1e-6)
    space.write_text("data: {name: synthetic}\nease: {reg: 10}\n")
    for argv in (["train", "--backbone", str(space)], ["tune", "--model", "ddrm", "--backbone", str(space)],
                 ["tune", "--model", "ease", "--backbone", str(backbone)]):
        assert main([*argv, *TINY, "--output", str(tmp_path / "x"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and ("needs a backend section" in err or "is for --model ddrm" in err), err
    assert not (tmp_path / "x").exists()


def test_invalid_trials_fail_alone_and_a_study_without_any_success_is_one_sentence(tmp_path, capsys):
    space = tmp_path / "s.yaml"
    space.write_text("params:\n  topk: {type: int, low: -5, high: 0}\n")  # ItemKNN refuses topk < 1
    assert main(["tune", "--model", "itemknn", *TINY, "--space", str(space), "--trials", "3", "--output",
                 str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "no trial completed" in err[-1] and err[-1].startswith("ddrm: error:") and len(err) == 4  # + 3 warnings
    assert all("failed: ItemKNN's topk must be >= 1" in line for line in err[:3])
    rows = _rows(tmp_path / "o" / "trials.csv")
    assert len(rows) == 3 and all(r["state"] == "fail" and "topk" in r["error"] for r in rows)


def test_a_worker_losing_the_schema_race_retries(tmp_path, monkeypatch):
    """Two workers creating one new storage together: the one whose schema insert collides opens it again."""
    import optuna

    from ddrm.tuning.storage import open_storage

    real, calls = optuna.storages.RDBStorage, []

    class IntegrityError(Exception):
        pass

    def flaky(url, **kw):
        calls.append(url)
        if len(calls) == 1:
            raise IntegrityError("UNIQUE constraint failed: alembic_version.version_num")
        return real(url, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    assert open_storage(f"sqlite:///{tmp_path / 's.db'}", tmp_path) is not None and len(calls) == 2


@pytest.mark.parametrize("beat", [True, False], ids=["heartbeat-stopped", "worker-without-heartbeats"])
def test_a_killed_workers_trial_is_failed_and_retried_with_its_parameters(tmp_path, capsys, beat):
    """A trial whose worker died is marked failed by the next worker and run once more: one whose heartbeat stopped
    (Optuna's stale check) and one whose worker never recorded a heartbeat (an older ddrm; fail_orphans)."""
    import optuna

    from ddrm.tuning.storage import open_storage
    from ddrm.tuning.study import resolve_space

    out = tmp_path / "ease"
    storage = open_storage(None, out, stale_after=2) if beat else f"sqlite:///{out / 'study.db'}"
    out.mkdir(parents=True, exist_ok=True)
    study = optuna.create_study(storage=storage, study_name="s", direction="maximize")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "heartbeat ... supposed to be used with Study.optimize"
        ghost = study.ask()  # a trial left running by a killed process: its values, its last heartbeat, silence
        resolve_space(resolve_model("ease"), None).suggest(ghost)
        if beat:
            study._storage.record_heartbeat(ghost._trial_id)
    time.sleep(3.0)
    p = _tune(["--model", "ease", *TINY, "--trials", "2", "--study", "s", "--stale-after", "2", "--output", str(out)],
              capsys)
    trials = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'study.db'}").trials
    assert trials[0].state.name == "FAIL" and p["trials"]["complete"] == 2
    retried = [t for t in trials if t.system_attrs.get("failed_trial") == ghost.number]
    assert len(retried) == 1 and retried[0].state.name == "COMPLETE" and retried[0].params == ghost.params
    assert _rows(out / "trials.csv")[0]["state"] == "fail"


def test_trial_records_carry_a_study_to_a_fresh_storage(tmp_path, capsys):
    """export -> import keeps every finished trial (states, values, parameters, intermediate values, attributes);
    running trials stay behind; ddrm tune on the imported study goes on where it was."""
    import math

    import optuna

    from ddrm.tuning.records import export_studies, import_studies, read_records

    src = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=src, study_name="s", direction="maximize")
    study.set_user_attr("data", "abc")

    def objective(trial):
        x = trial.suggest_float("x", 1e-3, 1.0, log=True)
        k = trial.suggest_categorical("k", [1, 2, "three"])
        trial.set_user_attr("seconds", 0.5)
        if trial.number == 1:
            trial.report(0.1, 2)
            raise optuna.TrialPruned()
        if trial.number == 2:  # failed by a signal (ddrm tune's objective words it so): continued after import
            trial.set_user_attr("error", "interrupted by SIGTERM; its training state is continued by a later run")
            return math.nan
        return x * (k if isinstance(k, int) else 3)

    study.optimize(objective, n_trials=4)
    study.ask()  # a running trial: not written
    path = tmp_path / "rec" / "s.jsonl"
    assert export_studies(src, path) == 4
    dest = optuna.storages.InMemoryStorage()
    assert import_studies(path, dest) == {"s": 4}
    again = optuna.load_study(study_name="s", storage=dest)
    assert again.user_attrs == {"data": "abc"}
    old = [t for t in study.get_trials() if t.state.name != "RUNNING"]
    new, waiting = again.get_trials()[:4], again.get_trials()[4:]
    assert [t.state for t in new] == [t.state for t in old]
    assert [(t.state.name, t.system_attrs["fixed_params"], t.user_attrs) for t in waiting] == [
        ("WAITING", old[2].params, {"continues_trial": 2})]  # its state stayed behind: it runs from the start
    for a, b in zip(old, new, strict=True):
        assert (a.params, a.distributions, a.intermediate_values, a.user_attrs, a.datetime_start) == (
            b.params, b.distributions, b.intermediate_values, b.user_attrs, b.datetime_start)
        assert a.value == b.value
    assert import_studies(path, dest) == {"s": 0}  # a study that has trials is not loaded twice
    assert len(optuna.load_study(study_name="s", storage=dest).get_trials()) == 5
    bad = tmp_path / "bad.jsonl"
    bad.write_text(path.read_text().splitlines()[0] + "\n{\"kind\": \"trial\"}\n")
    with pytest.raises(ConfigError, match="bad.jsonl: line 2: a trial before any study line"):
        read_records(bad)
    # ddrm tune: a study exported from one output folder and loaded into another's study.db continues there
    first = _tune(["--model", "ease", *TINY, "--trials", "3", "--output", str(tmp_path / "a")], capsys)
    assert export_studies(f"sqlite:///{tmp_path / 'a' / 'study.db'}", tmp_path / "ease.jsonl") == 3
    (tmp_path / "b").mkdir()
    import_studies(tmp_path / "ease.jsonl", f"sqlite:///{tmp_path / 'b' / 'study.db'}")
    same = _tune(["--model", "ease", *TINY, "--trials", "3", "--output", str(tmp_path / "b")], capsys)
    assert same["trials"]["complete"] == 3 and same["best"] == first["best"]
    assert _rows(tmp_path / "b" / "trials.csv") == _rows(tmp_path / "a" / "trials.csv")
    more = _tune(["--model", "ease", *TINY, "--trials", "4", "--output", str(tmp_path / "b")], capsys)
    assert more["trials"]["complete"] == 4


def test_still_improving_means_best_at_the_epoch_cap_after_a_worse_validation():
    from ddrm.training import TrainResult

    def run(best: int, last: int, validated: list[int], cap: int = 10) -> bool:
        history = [{"epoch": e, **({"valid": {}} if e in validated else {})} for e in range(1, last + 1)]
        return TrainResult(best_epoch=best, epochs_run=last, epoch_cap=cap, history=history).still_improving

    assert run(best=10, last=10, validated=[5, 10])  # the cap reached, its validation the best
    assert not run(best=5, last=10, validated=[5, 10])  # the best came earlier
    assert not run(best=6, last=6, validated=[3, 6])  # early stop (or interrupted) before the cap
    assert not run(best=10, last=10, validated=[10])  # one validation: nothing to compare with
    assert not TrainResult().still_improving  # closed-form models train no epochs


def test_pretrain_says_when_the_best_epoch_is_the_last(tmp_path, capsys):
    base = ["pretrain", *TINY, "--set", "backend.name=mf", "--set", "backend.dim=16", "--set", "train.eval_every=1",
            "--json", "--quiet"]
    flags = []
    for epochs, lr in ((3, 1e-3), (6, 5e-1)):  # a slow learner stopped at 3 epochs; a fast one past its best
        assert main([*base, "--set", f"train.epochs={epochs}", "--set", f"train.lr={lr}",
                     "--output", str(tmp_path / str(epochs))]) == 0
        captured = capsys.readouterr()
        p = json.loads(captured.out)
        assert p["still_improving"] == (p["best_epoch"] == p["epochs_run"] == epochs)
        assert ("a larger train.epochs may help" in captured.err) == p["still_improving"]
        flags.append(p["still_improving"])
    assert flags == [True, False]
