"""Interruption and exact resumption: a run stopped by SIGINT / SIGTERM mid-epoch and resumed ends bit-identical."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ddrm.backends import Backend, BackendConfig
from ddrm.checkpoint import load_checkpoint
from ddrm.cli import main
from ddrm.data.synthetic import SyntheticConfig, make_synthetic
from ddrm.errors import CheckpointError
from ddrm.model import DDRM
from ddrm.training import NonFiniteLoss, TrainConfig

CONFIG = (
    "data: {name: synthetic, synthetic: {n_users: 400, n_items: 200, mean_items: 30}}\n"
    "backend: {name: lightgcn, layers: 2, dim: 16, infer_layers_choices: [1, 2]}\n"
    "pretrain: {epochs: 4, eval_every: 2, batch_size: 32, lr: 0.01}\n"
    "ddrm: {steps: 4, dims: [32]}\n"
    "train: {epochs: 4, eval_every: 2, batch_size: 32}\n"
)


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ddrm", *args, "--quiet", "--json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("resume")
    (root / "c.yaml").write_text(CONFIG)
    proc = _cli("train", "--config", str(root / "c.yaml"), "--output", str(root / "full"))
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    return {"root": root, "payload": json.loads(out), "err": err}


def test_a_run_folder_keeps_its_log_whatever_the_terminal_shows(uninterrupted):
    log = (uninterrupted["root"] / "full" / "run.log").read_text()
    lines = log.splitlines()
    assert "ddrm train: run folder" in lines[0] and lines[0][:4].isdigit()  # a timestamp first
    # --quiet kept INFO off the terminal, not out of the file: every validation of both phases is there
    assert "INFO" not in uninterrupted["err"]
    assert sum("lightgcn epoch" in ln and "valid recall@20" in ln for ln in lines) == 2
    assert sum("ddrm epoch" in ln and "valid recall@20" in ln for ln in lines) == 2


# Runs ``ddrm ARGS...`` with the phase's step hook wrapped: once the phase's end-of-epoch-1 state exists (so the run
# is inside epoch 2), the fifth step sends the process the signal itself. Deterministic on any machine speed, unlike
# a signal sent from outside after a sleep, which a fast machine can let land on an epoch boundary (a valid stop, but
# not the mid-epoch one under test). The handler, the stop and the state write are the real ones.
_SIGNAL_MID_EPOCH = """
import importlib, os, signal, sys
from pathlib import Path
from ddrm.cli import entry_point
module, name, state, sig = sys.argv[1:5]
cls = getattr(importlib.import_module(module), name)
inner, seen = cls.on_step, []
def on_step(self, step):
    if Path(state).exists():
        seen.append(step)
        if len(seen) == 5:
            os.kill(os.getpid(), signal.Signals[sig])
    inner(self, step)
cls.on_step = on_step
sys.argv = ["ddrm", *sys.argv[5:]]
entry_point()
"""
_STEP_HOOK = {"backend": ("ddrm.backends.base", "EmbeddingBackend"), "ddrm": ("ddrm.model", "DDRMModule")}


@pytest.mark.parametrize(("phase", "sig", "code"), [("backend", signal.SIGTERM, 143), ("ddrm", signal.SIGINT, 130)])
def test_interrupted_mid_epoch_then_resumed_is_bit_identical(uninterrupted, phase, sig, code):
    root = uninterrupted["root"]
    run = root / f"cut-{phase}"
    state = run / f"state-{phase}.pt"
    proc = subprocess.run([sys.executable, "-c", _SIGNAL_MID_EPOCH, *_STEP_HOOK[phase], str(state), sig.name,
                           "train", "--config", str(root / "c.yaml"), "--output", str(run), "--quiet", "--json"],
                          capture_output=True, text=True, timeout=300)
    err = proc.stderr
    assert proc.returncode == code, err
    assert "Traceback" not in err and f"--resume {run}" in err
    assert "stopped:" not in err  # the log's line on the stop goes to the file only
    last = (run / "run.log").read_text().splitlines()[-1]
    assert "WARNING ddrm.runs: ddrm train stopped:" in last and f"stopped by {sig.name}" in last
    assert "at epoch 2, step 5 of" in last  # the step during which the signal came, finished
    saved = load_checkpoint(state, "train_state")
    assert (saved["epoch"], saved["step"]) == (2, 5)
    assert not (run / "metrics.json").exists()

    # a fresh run into the same folder refuses to clobber the interrupted one
    again = _cli("train", "--config", str(root / "c.yaml"), "--output", str(run))
    _, err2 = again.communicate(timeout=120)
    assert again.returncode == 2 and "--resume" in err2

    resumed = _cli("train", "--resume", str(run))
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    p = json.loads(out)
    full = uninterrupted["payload"]
    assert p["metrics"] == full["metrics"]
    assert p["backend_metrics"] == full["backend_metrics"]
    assert p["best_epoch"] == full["best_epoch"] and p["epochs_run"] == full["epochs_run"]
    # the inference depth chosen on validation, and what it rested on, also when the backend was reloaded
    assert set(full["infer_layers_valid"]) == {"1", "2"}
    assert (p["infer_layers"], p["infer_layers_valid"]) == (full["infer_layers"], full["infer_layers_valid"])
    assert not list(run.glob("state*.pt")), "training states are removed once the run is complete"
    starts = [ln for ln in (run / "run.log").read_text().splitlines() if "run folder" in ln]
    assert len(starts) == 2 and "ddrm train resumed" in starts[1]  # appended; the refused run wrote nothing


def test_resume_usage_errors(uninterrupted, capsys):
    root = uninterrupted["root"]
    assert main(["train", "--resume", str(root / "full"), "--quiet"]) == 2
    assert "no interrupted run" in capsys.readouterr().err
    assert main(["train", "--resume", str(root / "full"), "--set", "train.lr=1"]) == 2
    assert "drop --set" in capsys.readouterr().err
    assert main(["pretrain", "--resume", str(root / "nowhere"), "--quiet"]) == 2
    assert "config.yaml" in capsys.readouterr().err


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10, seed=3))


def _fit(data, seed: int, **train) -> Backend:
    cfg = TrainConfig(**{"epochs": 3, "eval_every": 1, "batch_size": 128, "lr": 0.01, **train})
    return Backend(BackendConfig(name="sgl", layers=1, dim=8), cfg, seed=seed, quiet=True).fit(data)


def test_same_seed_identical_other_seed_different(tiny):
    a, b, c = _fit(tiny, 0), _fit(tiny, 0), _fit(tiny, 1)
    assert torch.equal(a.user_embeddings(), b.user_embeddings())
    assert a.result_.history[-1]["loss"] == b.result_.history[-1]["loss"]
    assert not torch.equal(a.user_embeddings(), c.user_embeddings())
    d1 = DDRM(a, steps=3, dims=(16,), train=TrainConfig(epochs=2, batch_size=128), seed=0, quiet=True).fit(tiny)
    d2 = DDRM(b, steps=3, dims=(16,), train=TrainConfig(epochs=2, batch_size=128), seed=0, quiet=True).fit(tiny)
    d3 = DDRM(b, steps=3, dims=(16,), train=TrainConfig(epochs=2, batch_size=128), seed=5, quiet=True).fit(tiny)
    users = torch.arange(tiny.n_users)
    assert torch.equal(d1.score(users), d2.score(users))
    assert not torch.equal(d1.score(users), d3.score(users))


def test_validation_hook_is_not_called_after_the_validation_that_ends_the_run(tiny):
    """The hook may stop the run (the tuner prunes there): a run that trained to its end is never stopped by it."""
    for train, ends_early in [({"epochs": 4, "patience": 10}, False), ({"epochs": 6, "patience": 1, "lr": 1e-9}, True)]:
        calls: list[int] = []
        b = Backend(BackendConfig(name="mf", dim=8), TrainConfig(**{"eval_every": 1, "batch_size": 128, **train}),
                    seed=0, quiet=True).fit(tiny, on_validation=lambda epoch, score, seen=calls: seen.append(epoch))
        validated = [e["epoch"] for e in b.result_.history if "valid" in e]
        assert (b.result_.epochs_run < train["epochs"]) == ends_early  # by patience, or at its last epoch
        assert validated[-1] == b.result_.epochs_run and calls == validated[:-1], (calls, validated)


def test_state_file_holds_everything_and_resumes_after_the_last_epoch(tiny, tmp_path):
    state = tmp_path / "state.pt"
    a = Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2, eval_every=1, batch_size=128, lr=0.01),
                seed=0, quiet=True).fit(tiny, state)
    s = load_checkpoint(state, "train_state")
    assert {"model", "optimizer", "rng", "epoch_rng", "best_state", "bad", "result", "data", "train"} <= set(s)
    assert s["epoch"] == 3 and s["step"] == 0 and s["data"]["fingerprint"] == tiny.fingerprint()
    assert {"torch", "python", "numpy", "model"} <= set(s["rng"])
    # extending epochs continues from the saved state and equals a straight 4-epoch run
    b = Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=4, eval_every=1, batch_size=128, lr=0.01),
                seed=0, quiet=True).fit(tiny, state)
    c = Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=4, eval_every=1, batch_size=128, lr=0.01),
                seed=0, quiet=True).fit(tiny)
    assert torch.equal(b.user_embeddings(), c.user_embeddings())
    assert b.result_.best_valid == c.result_.best_valid
    assert a.result_.epochs_run == 2 and b.result_.epochs_run == 4


def test_state_refused_for_other_data_seed_or_settings(tiny, tmp_path):
    state = tmp_path / "state.pt"
    Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=1), seed=0, quiet=True).fit(tiny, state)
    other = make_synthetic(SyntheticConfig(n_users=120, n_items=60, mean_items=10, seed=4))
    with pytest.raises(CheckpointError, match="other interactions|users x"):
        Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2), seed=0, quiet=True).fit(other, state)
    with pytest.raises(CheckpointError, match="seed"):
        Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2), seed=1, quiet=True).fit(tiny, state)
    with pytest.raises(CheckpointError, match="train.batch_size"):
        Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2, batch_size=7), seed=0,
                quiet=True).fit(tiny, state)
    state.write_bytes(state.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="corrupted or truncated"):
        Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2), seed=0, quiet=True).fit(tiny, state)


def test_non_finite_loss_names_step_terms_and_keeps_last_state(tiny, tmp_path):
    state = tmp_path / "state.pt"
    Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=1, batch_size=128), seed=0,
            quiet=True).fit(tiny, state)
    before = state.read_bytes()
    with pytest.raises(NonFiniteLoss, match=r"epoch 2, step \d+ \(.*loss=inf\).*lower learning rate.*last good state"):
        Backend(BackendConfig(name="mf", dim=8, reg=np.inf), TrainConfig(epochs=3, batch_size=128), seed=0,
                quiet=True).fit(tiny, state)
    assert state.read_bytes() == before


def test_deferred_non_finite_check_names_the_window(tiny, monkeypatch):
    # the single-GPU path (loss read every CHECK_EVERY steps), exercised on the CPU: the first update with an
    # infinite loss turns the weights into NaN, and the check at the end of the window reports it
    from ddrm import training

    monkeypatch.setattr(training, "_deferred_checks", lambda device, world: True)
    assert -(-tiny.train.nnz // 16) > training.CHECK_EVERY
    with pytest.raises(NonFiniteLoss, match=rf"epoch 1, steps 0-{training.CHECK_EVERY - 1} \(.*loss=nan\)"):
        Backend(BackendConfig(name="mf", dim=8, reg=np.inf), TrainConfig(epochs=1, batch_size=16), seed=0,
                quiet=True).fit(tiny)
    b = Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2, eval_every=1, batch_size=16), seed=0,
                quiet=True).fit(tiny)
    monkeypatch.undo()
    a = Backend(BackendConfig(name="mf", dim=8), TrainConfig(epochs=2, eval_every=1, batch_size=16), seed=0,
                quiet=True).fit(tiny)
    # the same training either way: only when the loss is read changes
    torch.testing.assert_close(a.user_embeddings(), b.user_embeddings(), rtol=0, atol=0)
    assert [h["loss"] for h in a.result_.history] == pytest.approx([h["loss"] for h in b.result_.history], rel=1e-12)


def test_format_version_refused(tmp_path):
    from ddrm.checkpoint import save_checkpoint

    path = tmp_path / "x.pt"
    save_checkpoint(path, {"kind": "backend"})
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(path, "backend")


@pytest.mark.parametrize("name", ["diffrec", "multvae"])
def test_user_row_models_train_in_the_shared_loop_resumable_and_checked(tiny, tmp_path, name):
    from ddrm.baselines import build

    small = {"diffrec": {"dims": (16,), "steps": 5}, "multvae": {"dims": (16,), "latent": 4, "anneal_steps": 7}}[name]

    def model(epochs: int, **kw):
        return build(name, epochs=epochs, eval_every=1, patience=5, batch_size=32, quiet=True, **small, **kw)

    state = tmp_path / "state.pt"
    model(2).fit(tiny, state_path=state)
    assert load_checkpoint(state, "train_state")["epoch"] == 3
    resumed, straight = model(4).fit(tiny, state_path=state), model(4).fit(tiny)
    users = torch.arange(tiny.n_users)
    assert torch.equal(resumed.score(users), straight.score(users))
    assert resumed.result_.best_valid == straight.result_.best_valid and resumed.result_.epochs_run == 4
    with pytest.raises(NonFiniteLoss, match=f"{name}: non-finite loss at epoch 1"):
        model(2, lr=np.inf).fit(tiny)


def test_a_signal_taken_by_a_nested_block_stops_the_enclosing_one_too():
    """A trial's training loop (inner block) takes SIGTERM in its last epoch and ends normally: the study around it
    (outer block) must still stop."""
    import os

    from ddrm.interrupt import graceful_signals

    with graceful_signals("stopping the outer") as outer:
        with graceful_signals("stopping the inner") as inner:
            os.kill(os.getpid(), signal.SIGTERM)
            deadline = time.monotonic() + 5
            while not inner.requested and time.monotonic() < deadline:
                time.sleep(0.01)
        assert inner.signum == signal.SIGTERM and outer.signum == signal.SIGTERM
    with graceful_signals() as outer:
        with graceful_signals():
            pass
        assert not outer.requested


def test_a_block_entered_after_the_enclosing_one_took_a_signal_starts_stopped():
    """SIGTERM while a trial is still setting up (the study's block has taken it, the training loop's has not begun):
    the training loop must stop at its first step, not run the whole trial."""
    import os

    from ddrm.interrupt import graceful_signals

    with graceful_signals("stopping the outer") as outer:
        os.kill(os.getpid(), signal.SIGTERM)
        deadline = time.monotonic() + 5
        while not outer.requested and time.monotonic() < deadline:
            time.sleep(0.01)
        with graceful_signals("stopping the inner") as inner:
            assert inner.signum == signal.SIGTERM
    with graceful_signals():
        with graceful_signals() as inner:
            assert not inner.requested
