"""torchrun with 2 CPU processes (gloo) matches a single-process run; --device is accepted everywhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch.distributed as dist

pytestmark = pytest.mark.skipif(not dist.is_available() or not dist.is_gloo_available(), reason="needs gloo")

DATA = "data: {name: synthetic, synthetic: {n_users: 300, n_items: 120, mean_items: 15}}\nbackend: {name: mf, dim: 16}\n"
OPT = "{epochs: 6, eval_every: 2, batch_size: 256, lr: 0.01}"
CONFIGS = {"pretrain": f"{DATA}train: {OPT}\n",
           "train": f"{DATA}pretrain: {OPT}\ntrain: {OPT}\nddrm: {{steps: 4, dims: [32]}}\n"}


def _run(args: list[str], nproc: int = 1) -> dict:
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = [*(launcher if nproc > 1 else [sys.executable]), "-m", "ddrm", *args, "--json", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 1, proc.stdout  # only rank 0 prints
    return json.loads(lines[0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ddp")
    out = {}
    for cmd, text in CONFIGS.items():
        (root / f"{cmd}.yaml").write_text(text)
        for nproc in (1, 2):
            out[(cmd, nproc)] = _run([cmd, "--config", str(root / f"{cmd}.yaml"), "--output",
                                      str(root / f"{cmd}{nproc}"), "--device", "cpu"], nproc)
    return root, out


def test_two_gloo_processes_match_one_process_backend(runs):
    root, out = runs
    one, two = out[("pretrain", 1)], out[("pretrain", 2)]
    assert one["world_size"] == 1 and two["world_size"] == 2
    # same global batches, gradients averaged over the two halves: equal up to float rounding
    for split in ("valid", "test"):
        for key in ("recall@20", "ndcg@20"):
            assert two["metrics"][split][key] == pytest.approx(one["metrics"][split][key], abs=2e-3)
    assert (root / "pretrain2" / "backend.pt").is_file() and not list((root / "pretrain2").glob("state*"))


def test_two_gloo_processes_match_one_process_ddrm(runs):
    _, out = runs
    one, two = out[("train", 1)], out[("train", 2)]
    assert two["world_size"] == 2
    # the backend part is the same computation as above
    assert two["backend_metrics"]["test"]["recall@20"] == pytest.approx(
        one["backend_metrics"]["test"]["recall@20"], abs=2e-3)
    # DDRM's noise streams differ per rank, so only statistical agreement is expected
    for key in ("recall@20", "ndcg@20"):
        assert two["metrics"]["test"][key] == pytest.approx(one["metrics"]["test"][key], abs=0.03)


def test_unknown_device_is_one_sentence(capsys):
    from ddrm.cli import main

    assert main(["baseline", "mostpop", "--device", "tpu:7", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "device" in err
