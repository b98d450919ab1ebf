"""Experiment commands (--quick), T-CE / R-CE losses, DiffRec, and the statistics behind the tables."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ddrm.backends import BackendConfig, EmbeddingBackend
from ddrm.baselines import DiffRec
from ddrm.cli import main
from ddrm.data import SyntheticConfig, make_synthetic
from ddrm.errors import ConfigError
from ddrm.experiments.cells import interrupted_seconds
from ddrm.experiments.report import mean_std, paired_test
from ddrm.experiments.specs import LABEL

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny():
    return make_synthetic(SyntheticConfig(n_users=80, n_items=40, mean_items=8, seed=2))


def _backend(tiny, **cfg) -> EmbeddingBackend:
    return EmbeddingBackend(tiny.train, BackendConfig(name="mf", dim=8, layers=0, **cfg),
                            torch.Generator().manual_seed(0)).train()


def test_tce_drops_the_largest_losses_with_a_linear_schedule(tiny):
    m = _backend(tiny, denoise="tce", tce_max_rate=0.25, tce_warmup=100)
    users, pos, neg = (torch.arange(8) % 80, torch.arange(8) % 40, (torch.arange(8) + 7) % 40)
    u, p, n = m.user[users], m.item[pos], m.item[neg]
    per = F.softplus((u * n).sum(1) - (u * p).sum(1))
    for step, rate in ((0, 0.0), (50, 0.125), (100, 0.25), (10_000, 0.25)):
        m.on_step(step)
        assert m.drop_rate() == pytest.approx(rate)
        keep = round((1 - rate) * 8)
        expected = torch.sort(per.detach()).values[:keep].mean()
        assert float(m.loss(users, pos, neg)["bpr"].detach()) == pytest.approx(float(expected), rel=1e-6)
    m.eval()
    assert float(m.loss(users, pos, neg)["bpr"].detach()) == pytest.approx(float(per.detach().mean()), rel=1e-6)  # eval: no drop


def test_rce_weights_by_positive_score_power(tiny):
    m = _backend(tiny, denoise="rce", rce_beta=0.5)
    users, pos, neg = torch.tensor([0, 1, 2]), torch.tensor([3, 4, 5]), torch.tensor([6, 7, 8])
    u, p, n = m.user[users], m.item[pos], m.item[neg]
    s_pos = (u * p).sum(1)
    expected = (torch.sigmoid(s_pos) ** 0.5 * F.softplus((u * n).sum(1) - s_pos)).mean()
    assert float(m.loss(users, pos, neg)["bpr"].detach()) == pytest.approx(float(expected.detach()), rel=1e-6)


def test_diffrec_trains_scores_and_reweights_by_snr(tiny):
    m = DiffRec(epochs=2, eval_every=1, dims=(16,), steps=5, batch_size=32, quiet=True).fit(tiny)
    s = m.score(torch.arange(6))
    assert s.shape == (6, tiny.n_items) and torch.isfinite(s).all()
    abar = m.diffusion_.alphas_cumprod
    snr = abar / (1 - abar)
    w = m.module_.weights
    assert float(w[0]) == 1.0
    assert torch.allclose(w[1:].double(), snr[:-1] - snr[1:], rtol=1e-5)
    assert len(m.history_) == 2 and "recall@20" in m.history_[-1]["valid"]


def test_mean_std_and_paired_test(tmp_path):
    from scipy import stats

    assert mean_std([1.0]) == (1.0, 0.0)
    mu, sd = mean_std([1.0, 2.0, 4.0])
    assert mu == pytest.approx(7 / 3) and sd == pytest.approx(np.std([1, 2, 4], ddof=1))
    rng = np.random.default_rng(0)
    users = np.arange(50)
    a, b = rng.random(50), rng.random(50)
    for name, v in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        np.savez(tmp_path / name / "per_user.npz", users=users, recall_at_20=v)
    diff, p = paired_test(tmp_path, ["a"], ["b"])
    assert diff == pytest.approx(float((a - b).mean()))
    assert p == pytest.approx(float(stats.ttest_rel(a, b).pvalue))


def test_experiment_table_quick_end_to_end_and_resume(capsys, tmp_path):
    out = tmp_path / "table"
    args = ["experiment", "table", "--quick", "--seeds", "2", "--backends", "mf", "--output", str(out), "--json",
            "--quiet", "--results", str(tmp_path / "RESULTS.md")]
    assert main(args) == 0
    p = json.loads(capsys.readouterr().out)
    models = [r["model"] for r in p["rows"]]
    assert models == ["MostPop", "ItemKNN", "EASE", "RP3beta", "iALS", "DiffRec", "Mult-VAE", "MF", "MF + T-CE",
                      "MF + R-CE", "MF + DDRM"]
    ddrm = p["rows"][-1]
    assert ddrm["n_seeds"] == 2 and 0 <= ddrm["recall@20"] <= 1 and ddrm["recall@20_std"] >= 0
    assert "vs_backend_recall@20" in ddrm and "p_value_recall@20" in ddrm
    by_model = {r["model"]: r for r in p["rows"]}
    tce, mf = by_model["MF + T-CE"], by_model["MF"]  # the denoised backends are compared with their backend too
    assert tce["vs_backend_recall@20"] == pytest.approx(tce["recall@20"] / mf["recall@20"] - 1)
    # every trained row is set against the baseline that validates highest (not the one that tests highest)
    base_rows = p["rows"][:7]
    best = max(base_rows, key=lambda r: r["valid_recall@20"])
    assert all("best_baseline" not in r for r in base_rows)
    assert {r["best_baseline"] for r in p["rows"][7:]} == {best["model"]}
    assert ddrm["vs_best_baseline_recall@20"] == pytest.approx(ddrm["recall@20"] / best["recall@20"] - 1)
    best_key = {label: key for key, label in LABEL.items()}[best["model"]]
    _, want = paired_test(out / "cells", [f"synthetic/mf-ddrm/seed{s}" for s in (0, 1)],
                          [f"synthetic/{best_key}/seed{s}" for s in (0, 1)])
    assert ddrm["p_best_baseline_recall@20"] == pytest.approx(want, nan_ok=True)
    with open(out / "table.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 11 and float(rows[0]["recall@20"]) == pytest.approx(p["rows"][0]["recall@20"], rel=1e-5)
    assert "± " in (out / "table.md").read_text()
    cell_files = sorted(out.glob("cells/**/metrics.json"))
    assert len(cell_files) == p["cells"] == 22
    stamps = {f: f.stat().st_mtime_ns for f in cell_files}
    assert main(args) == 0  # resumes: every cell is already finished
    again = json.loads(capsys.readouterr().out)
    assert again["rows"] == p["rows"]
    assert {f: f.stat().st_mtime_ns for f in cell_files} == stamps
    block = (tmp_path / "RESULTS.md").read_text()
    assert "## Comparison table — synthetic" in block and "Seeds 0..1; 22 cells" in block
    assert set(p["cell_cpu_seconds"]) == set(p["cell_seconds"]) and len(p["cell_seconds"]) == 22
    assert all(v > 0 for v in p["cell_cpu_seconds"].values())
    assert "wall clock: the 22 cells that recorded their CPU time used " in block
    assert p["markdown"] in block and block.count("<!-- ddrm:begin table -->") == 1


def test_two_processes_share_one_experiment_and_run_each_cell_once(tmp_path):
    """Two 'ddrm experiment table' processes on one output folder: every cell is run by exactly one of them (the
    other goes on, then waits for it and reads it back), and both print the whole, identical table."""
    import re

    out = tmp_path / "table"
    cmd = [sys.executable, "-m", "ddrm", "experiment", "table", "--quick", "--seeds", "2", "--backends", "mf",
           "--output", str(out), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), [e for _, e in outs]
    ran = [set(re.findall(r"cell (\S+) done in", err)) for _, err in outs]
    cells = {str(f.parent.relative_to(out / "cells")) for f in out.glob("cells/**/metrics.json")}
    assert len(cells) == 22 and ran[0] | ran[1] == cells and not ran[0] & ran[1]
    rows = [json.loads(o)["rows"] for o, _ in outs]
    assert rows[0] == rows[1] and len(rows[0]) == 11


def test_experiment_table_with_a_hyphenated_backend_name(capsys, tmp_path):
    args = ["experiment", "table", "--quick", "--backends", "ease-factors", "--baselines", "--methods", "backend",
            "ddrm", "--output", str(tmp_path / "t"), "--json", "--quiet"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == ["EASE factors", "EASE factors + DDRM"]
    assert "vs_backend_recall@20" in rows[1]  # compared with its own backend row


def test_a_backend_named_as_a_baseline_of_the_same_table_gets_its_own_cells_and_row(capsys, tmp_path):
    """iALS is a baseline and a backbone: in one table the two are separate cells and rows (they once shared a
    cell folder: one overwrote the other and their row merged both as two "seeds")."""
    out = tmp_path / "t"
    assert main(["experiment", "table", "--quick", "--backends", "ials", "--baselines", "ials", "--methods", "backend",
                 "ddrm", "--output", str(out), "--json", "--quiet"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert [r["model"] for r in p["rows"]] == ["iALS", "iALS (backbone)", "iALS + DDRM"]
    assert all(r["n_seeds"] == 1 for r in p["rows"]) and p["cells"] == 3
    assert sorted(f.parent.parent.name for f in out.glob("cells/synthetic/*/seed0/metrics.json")) == [
        "ials", "ials-backbone", "ials-ddrm"]
    baseline, backbone, ddrm = p["rows"]
    assert ddrm["vs_backend_recall@20"] == pytest.approx(ddrm["recall@20"] / backbone["recall@20"] - 1)
    assert ddrm["best_baseline"] == "iALS" and "best_baseline" not in baseline
    assert main(["experiment", "table", "--quick", "--backends", "ials", "--baselines", "--methods", "backend",
                 "--output", str(tmp_path / "alone"), "--json", "--quiet"]) == 0  # without the baseline: as before
    assert [r["model"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["iALS"]
    assert (tmp_path / "alone" / "cells" / "synthetic" / "ials" / "seed0" / "metrics.json").is_file()


def test_experiment_table_fusion_rows_choose_the_weight_on_validation(capsys, tmp_path):
    out = tmp_path / "t"
    assert main(["experiment", "table", "--quick", "--backends", "mf", "--baselines", "--methods", "backend",
                 "fusion", "--output", str(out), "--json", "--quiet"]) == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [r["model"] for r in rows] == ["MF", "MF + DDRM (fused)"] and "vs_backend_recall@20" in rows[1]
    cell = json.loads((out / "cells" / "synthetic" / "mf-fusion" / "seed0" / "metrics.json").read_text())
    grid = [f"{0.1 * k:.1g}" if k not in (0, 10) else str(k // 10) for k in range(11)]
    assert sorted(cell["fusion_valid"], key=float) == grid
    assert cell["fusion_valid"][f"{cell['fusion']:g}"] == max(cell["fusion_valid"].values())
    assert cell["metrics"]["valid"]["recall@20"] == pytest.approx(max(cell["fusion_valid"].values()))
    backend = json.loads((out / "cells" / "synthetic" / "mf" / "seed0" / "metrics.json").read_text())
    assert cell["fusion_valid"]["0"] == pytest.approx(backend["metrics"]["valid"]["recall@20"])


def test_experiment_noise_and_ablation_quick(capsys, tmp_path):
    assert main(["experiment", "noise", "--quick", "--ratios", "0", "0.3", "--methods", "backend", "ddrm",
                 "--output", str(tmp_path / "noise"), "--json", "--quiet"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert {(r["ratio"], r["method"]) for r in p["rows"]} == {(0.0, "LightGCN"), (0.3, "LightGCN"),
                                                              (0.0, "LightGCN + DDRM"), (0.3, "LightGCN + DDRM")}
    assert (tmp_path / "noise" / "noise.png").read_bytes()[:8] == PNG
    assert (tmp_path / "noise" / "noise.csv").read_text().startswith("ratio,method")
    assert main(["experiment", "ablation", "--quick", "--steps", "2", "--output", str(tmp_path / "abl"), "--json",
                 "--quiet", "--results", str(tmp_path / "R.md")]) == 0
    p = json.loads(capsys.readouterr().out)
    assert "## Ablation — synthetic, mf backend" in (tmp_path / "R.md").read_text()
    assert (tmp_path / "results-abl.png").read_bytes()[:8] == PNG
    assert [r["variant"] for r in p["rows"]] == ["full", "no reconstruction", "no reweighting", "no user denoiser",
                                                 "no item denoiser", "pure-noise start", "T=2", "mf alone"]
    assert (tmp_path / "abl" / "ablation.png").read_bytes()[:8] == PNG
    assert main(["experiment", "ablation", "--quick", "--steps", "--variants", "full", "no reweighting", "--output",
                 str(tmp_path / "abl"), "--json", "--quiet"]) == 0  # a subset, from the finished cells
    assert [r["variant"] for r in json.loads(capsys.readouterr().out)["rows"]] == ["full", "no reweighting",
                                                                                 "mf alone"]


def test_experiment_usage_errors(capsys):
    assert main(["experiment"]) == 2
    assert main(["experiment", "noise", "--quick", "--ratios", "1.5"]) == 2
    assert main(["experiment", "table", "--quick", "--methods", "magic"]) == 2
    assert main(["experiment", "ablation", "--quick", "--variants", "nonsense"]) == 2
    assert main(["experiment", "table", "--quick", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert err.count("ddrm: error:") == 5 and "Traceback" not in err
    assert "unknown device 'tpu'" in err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_experiment_device_reaches_the_check_once(capsys, tmp_path):
    """--device is resolved before any cell runs: without CUDA, 'cuda' is one sentence, not a skipped row per cell."""
    assert main(["experiment", "table", "--quick", "--baselines", "--backends", "mf", "--methods", "backend",
                 "--device", "cuda", "--output", str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err
    assert "device 'cuda' requested but CUDA is not available" in err and err.count("\n") == 1
    assert not (tmp_path / "t").exists()


def test_a_cells_fingerprint_covers_what_it_computes_not_where():
    from ddrm.experiments.records import fingerprint

    cfg = {"data": {"name": "ml-1m_noisy"}, "backend": {"name": "mf", "dim": 64}, "train": {"lr": 1e-3, "device": "cpu"}}
    data = {"name": "ml-1m_noisy"}
    fp = fingerprint("pretrain", "mf", 0, cfg, data)
    assert len(fp) == 16 and fp == fingerprint("pretrain", "mf", 0, cfg, data)
    moved = {**cfg, "data": {"name": "ml-1m_noisy", "root": "/elsewhere"}, "train": {"lr": 1e-3, "device": "cuda"}}
    assert fingerprint("pretrain", "mf", 0, moved, {**data, "root": "/elsewhere"}) == fp  # another machine
    assert cfg["train"]["device"] == "cpu" and "root" not in cfg["data"]  # the config is not changed
    changed = [fingerprint("pretrain", "mf", 1, cfg, data),  # seed
               fingerprint("pretrain", "mf", 0, {**cfg, "train": {"lr": 2e-3}}, data),  # a hyper-parameter
               fingerprint("pretrain", "mf", 0, cfg, {**data, "noise_ratio": 0.2}),  # the data
               fingerprint("train", "mf", 0, cfg, data, needs=fp),  # kind and backend cell
               fingerprint("train", "mf", 0, cfg, data, needs="0" * 16),
               fingerprint("baseline", "ease", 0, {"reg": 500.0}, data),
               fingerprint("baseline", "ease", 0, {"reg": 500.0, "device": "cuda"}, data)]
    assert len({fp, *changed}) == 7  # all differ but the last two, where only the device does


def test_eta_uses_the_times_of_similar_cells():
    from ddrm.experiments.cells import Cell, estimate_seconds

    spent = {("baseline", "mostpop"): [2.0], ("baseline", "itemknn"): [4.0], ("pretrain", "mf"): [100.0, 120.0]}
    rest = [Cell("a", "pretrain", "mf", 0), Cell("b", "pretrain", "lightgcn", 0), Cell("c", "baseline", "ease", 0),
            Cell("d", "train", "mf", 0)]
    # mf: its own mean 110; lightgcn: the pretrain mean 110; ease: the baseline mean 3; DDRM: the mean of all, 56.5
    assert estimate_seconds(rest, spent) == pytest.approx(110 + 110 + 3 + 56.5)
    assert estimate_seconds(rest, {}) == 0.0


def test_results_block_is_appended_then_replaced_in_place():
    from ddrm.experiments.results import markers, splice

    begin, end = markers("table")
    first = splice("# Results\n\nIntro.\n", "table", "| a |\n|---|\n| 1 |", "Comparison table")
    assert first == f"# Results\n\nIntro.\n\n## Comparison table\n\n{begin}\n| a |\n|---|\n| 1 |\n{end}\n"
    edited = first.replace("Intro.", "Intro, edited by hand.") + "\nCommentary after the block.\n"
    second = splice(edited, "table", "| a |\n|---|\n| 2 |", "ignored when the block exists")
    assert second == edited.replace("| 1 |", "| 2 |")
    both = splice(second, "noise", "curve", "Noise")
    assert both.startswith(second.rstrip("\n")) and both.endswith(f"{markers('noise')[0]}\ncurve\n{markers('noise')[1]}\n")
    assert splice(both, "table", "| 3 |", "t").count(begin) == 1
    with pytest.raises(ConfigError, match="out of order"):
        splice(f"{end}\n{begin}\n", "table", "x", "t")
    with pytest.raises(ConfigError, match="out of order"):
        splice(f"{begin}\nno end\n", "table", "x", "t")
    with pytest.raises(ConfigError, match="may only use"):
        splice("", "bad id", "x", "t")


def test_experiment_results_option_writes_its_block(capsys, tmp_path):
    results = tmp_path / "docs" / "RESULTS.md"
    args = ["experiment", "noise", "--quick", "--ratios", "0", "0.3", "--methods", "backend", "ddrm", "--output",
            str(tmp_path / "noise"), "--results", str(results), "--quiet"]
    assert main(args) == 0
    text = results.read_text()
    assert "<!-- ddrm:begin noise -->" in text and "## Robustness to injected noise" in text
    assert "ddrm experiment noise --quick --ratios 0 0.3" in text and "Seeds 0..0; 4 cells" in text
    assert "| injected noise ratio | LightGCN R@20 | LightGCN N@20 | LightGCN + DDRM R@20 |" in text
    assert "![noise plot](results-noise.png)" in text
    assert (tmp_path / "docs" / "results-noise.png").read_bytes()[:8] == PNG
    results.write_text(text.replace("## Robustness", "Hand-written intro.\n\n## Robustness") + "\nMy notes.\n")
    assert main(args) == 0  # resumed from the finished cells: only the block is rewritten
    again = results.read_text()
    assert again.count("<!-- ddrm:begin noise -->") == 1
    assert "Hand-written intro." in again and again.endswith("My notes.\n")
    capsys.readouterr()
    results.write_text("<!-- ddrm:end noise -->\n")
    assert main(args) == 2
    assert "markers of block 'noise'" in capsys.readouterr().err
    assert results.read_text() == "<!-- ddrm:end noise -->\n"  # untouched


def test_p_values_are_printed_without_underflowing_to_zero():
    from ddrm.experiments.report import fmt_p

    assert fmt_p(0.000451) == "0.000451" and fmt_p(1.32e-21) == "1.32e-21"
    assert fmt_p(0.0) == "< 1e-300" and fmt_p(float("nan")) == "–"


def test_experiment_table_tuned_takes_the_tuned_configs(capsys, tmp_path):
    """--tuned reads CONFIGS/<dataset>/tuned/<model>.yaml where present (the row says so) and the hand-set recipe
    elsewhere; a seeded baseline takes each cell's seed whatever its tuned config says."""
    configs = tmp_path / "configs"
    (configs / "synthetic" / "tuned").mkdir(parents=True)
    data = "data: {name: synthetic, synthetic: {n_users: 120, n_items: 60, mean_items: 10}}\n"
    (configs / "synthetic" / "tuned" / "ease.yaml").write_text(data + "ease: {reg: 7.5}\n")
    (configs / "synthetic" / "tuned" / "ials.yaml").write_text(data + "ials: {factors: 4, iterations: 3, seed: 0}\n")
    (configs / "synthetic" / "baselines.yaml").write_text("itemknn: {topk: 20}\n")
    (configs / "synthetic" / "tuned" / "mf.yaml").write_text(
        data + "backend: {name: mf, dim: 8, reg: 0.001}\ntrain: {epochs: 2, eval_every: 1, lr: 0.01}\n"
               "output: runs/elsewhere\n")
    out = tmp_path / "t"
    assert main(["experiment", "table", "--datasets", "synthetic", "--backends", "mf", "--methods", "backend",
                 "--baselines", "ease", "itemknn", "ials", "--tuned", "--configs", str(configs), "--seeds", "2",
                 "--output", str(out), "--json", "--quiet"]) == 0
    p = json.loads(capsys.readouterr().out)
    assert {r["model"]: r["config"] for r in p["rows"]} == {"EASE": "tuned", "ItemKNN": "hand-set", "iALS": "tuned",
                                                           "MF": "tuned"}
    assert "| hyper-parameters | valid R@20 |" in p["markdown"]
    mf_row = next(line for line in p["markdown"].splitlines() if "| MF |" in line)
    mf_valid = np.mean([json.loads((out / "cells" / "synthetic" / "mf" / f"seed{s}" / "metrics.json").read_text())
                        ["metrics"]["valid"]["recall@20"] for s in (0, 1)])
    assert f"| tuned | {mf_valid:.4f} |" in mf_row  # what selected the row, beside its test numbers
    cell = json.loads((out / "cells" / "synthetic" / "ease" / "seed0" / "metrics.json").read_text())
    assert cell["params"]["reg"] == 7.5
    seeds = [json.loads((out / "cells" / "synthetic" / "ials" / f"seed{s}" / "metrics.json").read_text())["params"]
             ["seed"] for s in (0, 1)]
    assert seeds == [0, 1]
    mf = json.loads((out / "cells" / "synthetic" / "mf" / "seed0" / "metrics.json").read_text())
    assert mf["epochs_run"] == 2


def test_experiment_cells_outlive_their_machine_through_records(capsys, tmp_path):
    """--records keeps each finished cell as one file; a fresh output folder takes the cells from there (nothing is
    trained again), a new row runs alone, a changed config runs again (its DDRM cell retrains the backend whose
    checkpoint the record lacks), and a damaged record is one sentence."""
    records = tmp_path / "records"
    base = ["experiment", "table", "--quick", "--backends", "mf", "--baselines", "ease", "--records", str(records),
            "--json", "--quiet"]
    assert main([*base, "--methods", "backend", "ddrm", "--output", str(tmp_path / "a")]) == 0
    first = json.loads(capsys.readouterr().out)["rows"]
    kept = sorted(str(p.relative_to(records)) for p in records.rglob("*.npz"))
    assert [k.rsplit("-", 1)[0] for k in kept] == ["synthetic/ease/seed0", "synthetic/mf-ddrm/seed0",
                                                   "synthetic/mf/seed0"]
    fresh = tmp_path / "b"  # another machine: an empty output folder, the records only
    assert main([*base, "--methods", "backend", "ddrm", "--output", str(fresh)]) == 0
    assert json.loads(capsys.readouterr().out)["rows"] == first
    assert not list(fresh.rglob("*.pt"))  # nothing was trained
    assert main([*base, "--methods", "backend", "tce", "ddrm", "--output", str(fresh)]) == 0
    rows = {r["model"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert len(list(records.rglob("*.npz"))) == 4 and not (fresh / "cells/synthetic/mf/seed0/backend.pt").exists()
    assert "vs_backend_recall@20" in rows["MF + T-CE"]
    # DDRM's config changes: its cell runs again, on a backend trained again (logged: no --quiet)
    assert main([*base[:-1], "--methods", "backend", "ddrm", "--ddrm-epochs", "1", "--output", str(fresh)]) == 0
    out, log = capsys.readouterr()
    again = {r["model"]: r for r in json.loads(out)["rows"]}
    assert "synthetic/mf-ddrm/seed0 was run with another config: running it again" in log
    assert "cell synthetic/mf/seed0: training it again for its checkpoint" in log
    assert "its record said" not in log  # retrained, the backend gives its recorded numbers (same CPU)
    assert again["MF"] == rows["MF"] and (fresh / "cells/synthetic/mf/seed0/backend.pt").is_file()
    assert len(list(records.rglob("synthetic/mf-ddrm/seed0-*.npz"))) == 2
    # cells finished before --records was given are recorded when it is
    plain = ["experiment", "table", "--quick", "--backends", "mf", "--baselines", "ease", "--methods", "backend",
             "--output", str(tmp_path / "d"), "--quiet"]
    assert main(plain) == 0
    later = tmp_path / "later"
    assert main([*plain, "--records", str(later)]) == 0
    capsys.readouterr()
    assert sorted(p.name.rsplit("-", 1)[0] for p in later.rglob("*.npz")) == ["seed0", "seed0"]
    damaged = next(records.rglob("synthetic/ease/seed0-*.npz"))
    damaged.write_bytes(b"not a record")
    assert main([*base, "--methods", "backend", "--output", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert f"{damaged}: not a readable cell record" in err and err.count("\n") == 1, err


def test_finished_only_assembles_the_table_from_finished_cells_and_runs_none(capsys, tmp_path, monkeypatch):
    """--finished-only builds the table from the cells finished here or recorded, without running a cell or loading
    data: a row shows the seeds it has and names the others as not run yet, and its comparisons pair the seeds both
    sides have; the same command without the flag then runs just the missing cell and gives the full table."""
    from ddrm.experiments import Setup
    from ddrm.experiments.report import paired_test
    from ddrm.machine import machine_info

    records = tmp_path / "records"
    base = ["experiment", "table", "--quick", "--backends", "mf", "--baselines", "ease", "--methods", "backend",
            "tce", "--seeds", "2", "--records", str(records), "--json", "--quiet"]
    assert main([*base, "--output", str(tmp_path / "full")]) == 0
    full = {r["model"]: r for r in json.loads(capsys.readouterr().out)["rows"]}
    for p in records.rglob("synthetic/mf-tce/seed1-*.npz"):  # the worker meant to run it has not yet
        p.unlink()

    def no_data(self, section):
        raise AssertionError("--finished-only loaded data")

    monkeypatch.setattr(Setup, "data", no_data)
    part, results = tmp_path / "part", tmp_path / "RESULTS.md"
    assert main([*base, "--output", str(part), "--finished-only", "--results", str(results)]) == 0
    p = json.loads(capsys.readouterr().out)
    rows = {r["model"]: r for r in p["rows"]}
    assert p["not_run"] == 1 and not (part / "cells/synthetic/mf-tce/seed1/metrics.json").exists()
    assert rows["MF"] == full["MF"] and rows["EASE"] == full["EASE"]
    cells = tmp_path / "full" / "cells" / "synthetic"
    seed0 = {m: json.loads((cells / m / "seed0" / "metrics.json").read_text())["metrics"]["test"]
             for m in ("mf", "mf-tce")}
    tce = rows["MF + T-CE"]
    assert tce["n_seeds"] == 1 and tce["missing_seeds"] == [1] and tce["error"] == "not run yet"
    assert tce["recall@20"] == seed0["mf-tce"]["recall@20"]
    assert tce["vs_backend_seeds"] == [0] and tce["vs_backend_recall@20"] == pytest.approx(
        seed0["mf-tce"]["recall@20"] / seed0["mf"]["recall@20"] - 1)
    assert tce["p_value_recall@20"] == paired_test(cells, ["mf-tce/seed0"], ["mf/seed0"])[1]
    assert tce["vs_best_baseline_seeds"] == [0] and tce["best_baseline"] == "EASE"
    line = next(x for x in p["markdown"].splitlines() if "| MF + T-CE |" in x)
    assert "(seed 0); seed 1 not run yet" in line and line.count("(seed 0)") == 2, line
    block = results.read_text()
    assert "6 cells, 1 of them not run yet" in block and "Machine:" not in block
    assert f"Assembled from finished cells, none run here; the cells ran on: {machine_info()['cpu']} (5)." in block
    monkeypatch.undo()
    assert main([*base, "--output", str(part)]) == 0  # runs the missing cell only
    assert {r["model"]: r for r in json.loads(capsys.readouterr().out)["rows"]} == full
    assert sorted(c.parent.name for c in part.rglob("backend.pt")) == ["seed1"]


INTERRUPTIBLE = (
    "data: {name: synthetic, synthetic: {n_users: 600, n_items: 200, mean_items: 20}}\n"
    "backend: {name: mf, dim: 16, reg: 0.001}\n"
    "train: {epochs: 6, eval_every: 1, lr: 0.01, batch_size: 64}\n"
)


def test_an_interrupted_cell_continues_its_training_when_the_command_runs_again(capsys, tmp_path):
    """SIGTERM mid-cell keeps its training state and cell.json; running the same command again continues that
    state (the table equals an uninterrupted run's), a state that cannot be read starts the cell over (with a
    warning), and the state of another config is never continued."""
    configs = tmp_path / "configs"
    (configs / "synthetic" / "tuned").mkdir(parents=True)
    (configs / "synthetic" / "tuned" / "mf.yaml").write_text(INTERRUPTIBLE)

    def args(out):
        return ["experiment", "table", "--datasets", "synthetic", "--backends", "mf", "--methods", "backend",
                "--baselines", "--tuned", "--configs", str(configs), "--seeds", "1", "--output", str(out), "--json"]

    assert main([*args(tmp_path / "full"), "--quiet"]) == 0
    full = json.loads(capsys.readouterr().out)["rows"]

    cut = tmp_path / "cut"
    cell = cut / "cells" / "synthetic" / "mf" / "seed0"
    proc = subprocess.Popen([sys.executable, "-m", "ddrm", *args(cut), "--quiet"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (cell / "state.pt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # written at the end of epoch 1 of 6
    assert proc.poll() is None, "the cell ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "Run the same command again to continue" in err and "--resume" not in err
    marker = json.loads((cell / "cell.json").read_text())
    assert marker["seconds"] > 0 and marker["cpu_seconds"] > 0 and not (cell / "metrics.json").exists()
    spare = tmp_path / "spare"
    shutil.copytree(cut, spare)

    assert main(args(cut)) == 0
    out, log = capsys.readouterr()
    assert "cell synthetic/mf/seed0: continuing its interrupted training" in log
    assert json.loads(out)["rows"] == full
    done = json.loads((cell / "metrics.json").read_text())
    assert done["cell_seconds"] > marker["seconds"]
    assert done["cell_cpu_seconds"] > marker["cpu_seconds"]  # both parts' CPU time, the work whatever the share
    from ddrm.machine import code_version

    assert done["code"] == code_version()  # the code that computed it (version + commit in a checkout)
    assert not (cell / "cell.json").exists() and not list(cell.glob("state*.pt"))

    spare_cell = spare / "cells" / "synthetic" / "mf" / "seed0"
    (spare_cell / "state.pt").write_bytes(b"not a state")
    assert main(args(spare)) == 0
    out, log = capsys.readouterr()
    assert "its training state cannot be continued" in log and "starting it over" in log
    assert json.loads(out)["rows"] == full

    fp = marker["fingerprint"]
    assert interrupted_seconds(cell, fp) is None  # finished: no state left
    (cell / "state.pt").write_bytes(b"x")
    for text, want in ((json.dumps({"fingerprint": fp, "seconds": 3.0, "cpu_seconds": 2.0}), (3.0, 2.0)),
                       (json.dumps({"fingerprint": fp, "seconds": 3.0}), (3.0, None)),  # a part that did not count
                       (json.dumps({"fingerprint": "another", "seconds": 3.0}), None), ("{damaged", None)):
        (cell / "cell.json").write_text(text)
        assert interrupted_seconds(cell, fp) == want
