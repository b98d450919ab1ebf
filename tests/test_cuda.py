"""The GPU paths: training, evaluation, checkpoints and the CLI on CUDA agree with the CPU. Skipped without a GPU."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ddrm.backends import Backend, BackendConfig, build
from ddrm.cli import main
from ddrm.data import SyntheticConfig, make_synthetic
from ddrm.evaluation import evaluate
from ddrm.model import DDRM
from ddrm.training import CHECK_EVERY, NonFiniteLoss, TrainConfig

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


class _OnCPU:
    """Scores of a CUDA model, moved to the CPU: evaluation then runs entirely on the CPU."""

    def __init__(self, model):
        self.model = model

    def score(self, users: torch.Tensor) -> torch.Tensor:
        return self.model.score(users.to("cuda")).cpu()


@pytest.fixture(scope="module")
def data():
    return make_synthetic(SyntheticConfig(n_users=200, n_items=90, mean_items=12, seed=4))


@pytest.fixture(scope="module")
def gpu_backend(data):
    return build("lightgcn", layers=2, epochs=6, eval_every=3, lr=0.02, batch_size=256, seed=0, quiet=True,
                 device="cuda").fit(data)


def test_backend_trains_on_cuda_and_matches_cpu(data, gpu_backend, tmp_path):
    assert gpu_backend.user_embeddings().device.type == "cuda"
    on_gpu = evaluate(gpu_backend, data, "test", (10, 20), device="cuda").metrics
    on_cpu = evaluate(_OnCPU(gpu_backend), data, "test", (10, 20), device="cpu").metrics
    for key, value in on_cpu.items():
        assert on_gpu[key] == pytest.approx(value, abs=1e-6), key
    assert on_gpu["recall@10"] > 2 * 10 / data.n_items  # it learned something
    cpu = build("lightgcn", layers=2, epochs=6, eval_every=3, lr=0.02, batch_size=256, seed=0, quiet=True).fit(data)
    # same sampled batches (numpy RNG), same maths: the two devices agree up to float rounding
    assert evaluate(cpu, data, "test", (20,)).metrics["recall@20"] == pytest.approx(on_gpu["recall@20"], abs=0.02)
    gpu_backend.save(tmp_path / "b.pt", data)
    again = Backend.load(tmp_path / "b.pt", data, "cpu")
    torch.testing.assert_close(again.score(torch.arange(7)), gpu_backend.score(torch.arange(7)).cpu(),
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("bf16", [False, True])
def test_ddrm_trains_on_cuda_and_reloads(data, gpu_backend, tmp_path, bf16):
    m = DDRM(gpu_backend, train=TrainConfig(epochs=3, eval_every=1, batch_size=256, lr=3e-3, device="cuda"),
             quiet=True, dims=(32,), steps=5, bf16=bf16).fit(data)
    assert m.device_.type == "cuda" and next(m.module_.parameters()).device.type == "cuda"
    r = evaluate(m, data, "test", (10,), device="cuda").metrics["recall@10"]
    assert r > 1.3 * 10 / data.n_items
    m.save(tmp_path / "d.pt", data)
    same = DDRM.load(tmp_path / "d.pt", data, "cuda")
    torch.testing.assert_close(same.score(torch.arange(9)), m.score(torch.arange(9)))
    cpu = DDRM.load(tmp_path / "d.pt", data, "cpu")  # the inference noise is drawn by the CPU generator now
    assert evaluate(cpu, data, "test", (10,)).metrics["recall@10"] == pytest.approx(r, abs=0.05)


def test_cli_end_to_end_on_cuda(tmp_path, capsys):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("data: {name: synthetic, synthetic: {n_users: 150, n_items: 70, mean_items: 10}}\n"
                   "backend: {name: mf, dim: 16}\npretrain: {epochs: 4, eval_every: 2, batch_size: 256, lr: 0.01}\n"
                   "train: {epochs: 2, eval_every: 1, batch_size: 256, lr: 0.003}\nddrm: {steps: 4, dims: [32]}\n")
    out = tmp_path / "run"
    assert main(["train", "--config", str(cfg), "--output", str(out), "--device", "cuda", "--json", "--quiet"]) == 0
    trained = json.loads(capsys.readouterr().out)
    assert set(trained["metrics"]) >= {"valid", "test"} and set(trained["backend_metrics"]) >= {"valid", "test"}
    assert main(["evaluate", "--checkpoint", str(out / "ddrm.pt"), "--device", "cuda", "--json", "--quiet"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["metrics"]["test"]["recall@20"] == pytest.approx(trained["metrics"]["test"]["recall@20"], abs=1e-6)
    assert main(["recommend", "--checkpoint", str(out / "ddrm.pt"), "--user", "3", "--k", "5", "--device", "cuda",
                 "--json", "--quiet"]) == 0
    rec = json.loads(capsys.readouterr().out)["recommendations"][0]
    assert rec["user_id"] == "3" and [it["rank"] for it in rec["items"]] == [1, 2, 3, 4, 5]
    scores = [it["score"] for it in rec["items"]]
    assert scores == sorted(scores, reverse=True)
    from ddrm.serve import RecommendationService

    service = RecommendationService(out / "ddrm.pt", device="cuda")  # the HTTP app's engine, without HTTP
    served = service.recommend_user("3", k=5)
    assert [it["item_id"] for it in served["items"]] == [it["item_id"] for it in rec["items"]]
    history = [it["item_id"] for it in rec["items"][:2]]
    folded = service.recommend_history(history, k=5)
    assert len(folded["items"]) == 5 and not set(history) & {it["item_id"] for it in folded["items"]}


def test_experiment_cells_train_on_the_requested_device_and_share_records_with_cpu(tmp_path, capsys):
    """ddrm experiment --device cuda trains every cell on the GPU; the records' fingerprints ignore the device, so
    the cells a CPU run recorded are taken as they are."""
    records = tmp_path / "records"
    base = ["experiment", "table", "--quick", "--backends", "mf", "--baselines", "diffrec", "--methods", "backend",
            "ddrm", "--records", str(records), "--json", "--quiet"]
    assert main([*base, "--device", "cuda", "--output", str(tmp_path / "gpu")]) == 0
    gpu = json.loads(capsys.readouterr().out)["rows"]
    import yaml

    for cell in ("mf/seed0", "mf-ddrm/seed0"):
        cfg = yaml.safe_load((tmp_path / "gpu" / "cells" / "synthetic" / cell / "config.yaml").read_text())
        assert cfg["train"]["device"] == "cuda"
    assert len(list(records.rglob("*.npz"))) == 3
    assert main([*base, "--device", "cpu", "--output", str(tmp_path / "cpu")]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == gpu and len(list(records.rglob("*.npz"))) == 3


def test_non_finite_loss_is_caught_without_a_sync_per_step(data):
    # on one GPU the loss is read every CHECK_EVERY steps: the error names the window of steps
    n_steps = -(-data.train.nnz // 64)
    assert n_steps > CHECK_EVERY
    with pytest.raises(NonFiniteLoss, match=rf"epoch 1, steps 0-{CHECK_EVERY - 1} \(.*loss=nan\).*lower learning rate"):
        Backend(BackendConfig(name="mf", dim=8, reg=np.inf), TrainConfig(epochs=1, batch_size=64, device="cuda"),
                quiet=True).fit(data)
