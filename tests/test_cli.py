from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from ddrm.cli import main
from ddrm.recommender import Recommender


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_demo_json(capsys):
    code, out, _ = run(capsys, "demo", "--json", "--quiet", "--set", "synthetic.n_users=120",
                       "--set", "synthetic.n_items=60", "--set", "synthetic.mean_items=10")
    assert code == 0
    payload = json.loads(out)
    fused = f"LightGCN + DDRM fused (w {payload['fusion']:g})"
    assert set(payload["metrics"]) == {"MostPop", "EASE", "LightGCN", "LightGCN + DDRM", fused}
    assert 0 <= payload["metrics"]["EASE"]["test"]["recall@20"] <= 1
    aucs = [r["noise AUC"] for r in payload["rows"] if r["noise AUC"] != "-"]
    assert len(aucs) == 3 and all(0 <= a <= 1 for a in aucs)
    valid = {k: v["valid"]["recall@20"] for k, v in payload["metrics"].items()}
    assert valid[fused] == pytest.approx(max(payload["fusion_valid"].values()))  # chosen on validation ...
    assert valid[fused] >= valid["LightGCN"] - 1e-9  # ... among weights that include LightGCN itself
    assert "LightGCN" in payload["verdict"] and payload["verdict"].count("(") == 3


def test_baseline_json_on_a_folder(capsys, tmp_path):
    rng = np.random.default_rng(0)
    for s, n in (("train", 400), ("valid", 60), ("test", 60)):
        np.save(tmp_path / f"{s}_list.npy", np.stack([rng.integers(0, 30, n), rng.integers(0, 50, n)], 1))
    code, out, err = run(capsys, "baseline", "ease", "--data", str(tmp_path), "--set", "reg=10", "--set",
                         "eval.ks=[5,20]", "--json", "--quiet")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["params"]["reg"] == 10
    assert set(payload["metrics"]) == {"valid", "test"}
    assert set(payload["metrics"]["test"]) == {f"{m}@{k}" for m in ("recall", "ndcg", "precision", "mrr", "hit")
                                               for k in (5, 20)}


def test_data_info_and_prepare_with_noise(capsys, tmp_path):
    src = tmp_path / "raw"
    src.mkdir()
    rows = "\n".join(f"{u}\t{i}\t{1 + (u + 2 * i) % 5}\t{(u * 7 + i * 13) % 101}" for u in range(1, 40) for i in range(1, 30) if (u + i) % 3)
    (src / "u.data").write_text(rows + "\n")
    out_dir = tmp_path / "prepared"
    code, out, err = run(capsys, "data", "prepare", str(src), "--output", str(out_dir), "--mode", "noisy",
                         "--method", "chrono-user", "--noise-ratio", "0.1", "--json", "--quiet")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["splits"]["train"]["noisy_interactions"] == round(0.1 * (summary["splits"]["train"]["interactions"]
                                                                             - summary["splits"]["train"][
                                                                                 "noisy_interactions"]))
    assert sorted(p.name for p in out_dir.iterdir()) == ["prepared.test.inter", "prepared.train.inter",
                                                         "prepared.valid.inter"]
    code, out, _ = run(capsys, "data", "info", str(out_dir))
    assert code == 0 and "users" in out and "overlaps" in out


def _bad_inputs(tmp_path):
    cases = {}
    d = tmp_path / "empty"
    d.mkdir()
    (d / "train.txt").write_text("")
    (d / "test.txt").write_text("0 1\n")
    cases["empty file"] = (str(d), [])
    d = tmp_path / "nonnumeric"
    d.mkdir()
    (d / "train.txt").write_text("0 1 2\n1 x 3\n")
    (d / "test.txt").write_text("0 3\n")
    cases["non-numeric id"] = (str(d), [])
    d = tmp_path / "negative"
    d.mkdir()
    np.save(d / "train_list.npy", np.array([[0, 1], [-1, 2]]))
    np.save(d / "valid_list.npy", np.array([[0, 2]]))
    np.save(d / "test_list.npy", np.array([[0, 3]]))
    cases["negative id"] = (str(d), [])
    d = tmp_path / "onecol"
    d.mkdir()
    (d / "x.train.inter").write_text("user_id:token\titem_id:token\n1\t2\n3\n")
    (d / "x.test.inter").write_text("user_id:token\titem_id:token\n1\t3\n")
    cases["one column"] = (str(d), [])
    d = tmp_path / "missing"
    d.mkdir()
    np.save(d / "train_list.npy", np.array([[0, 1]]))
    cases["missing split"] = (str(d), [])
    d = tmp_path / "csv"
    d.mkdir()
    (d / "ratings.csv").write_text("uid,iid\n1,2\n")
    cases["csv without column"] = (str(d), [])
    cases["unknown dataset"] = ("no-such-dataset", [])
    d = tmp_path / "garbage"
    d.mkdir()
    (d / "train_list.npy").write_bytes(b"\x00\xff garbage")
    cases["binary garbage"] = (str(d), [])
    return cases


@pytest.mark.parametrize("case", ["empty file", "non-numeric id", "negative id", "one column", "missing split",
                                  "csv without column", "unknown dataset", "binary garbage"])
def test_bad_input_one_sentence_exit_2(capsys, tmp_path, case):
    spec, _ = _bad_inputs(tmp_path)[case]
    out_dir = tmp_path / "out"
    code, out, err = run(capsys, "data", "prepare", spec, "--output", str(out_dir), "--quiet")
    assert code == 2
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("ddrm: error: "), err
    assert "Traceback" not in err
    assert not out_dir.exists()
    assert not list(tmp_path.glob(".out*"))


@pytest.mark.parametrize("name, setting, message", [
    ("ease", "reg=0", "EASE's reg must be > 0"),
    ("ease", "reg=big", "'ease.reg' must be a number"),
    ("itemknn", "topk=0", "ItemKNN's topk must be >= 1"),
    ("itemknn", "topk=2.5", "'itemknn.topk' must be an integer"),
    ("rp3beta", "alpha=-1", "RP3beta's topk must be >= 1 and alpha > 0"),
    ("ials", "factors=0", "iALS needs factors >= 1"),
    ("diffrec", "lr=-1", "DiffRec needs epochs >= 0, batch_size >= 1, lr > 0"),
    ("diffrec", "dims=[a]", "'diffrec.dims[0]' must be an integer"),
    ("multvae", "batch_size=0", "Mult-VAE needs epochs >= 0, batch_size >= 1"),
    ("multvae", "reweight=true", "unknown parameter 'reweight' for baseline multvae"),
])
def test_a_bad_baseline_value_is_one_sentence_and_exit_2(capsys, tmp_path, name, setting, message):
    out = tmp_path / "run"
    code, _, err = run(capsys, "baseline", name, "--data", "synthetic", "--set", "epochs=1" if name in (
        "diffrec", "multvae") else "data.noise_seed=0", "--set", setting, "--output", str(out), "--quiet")
    assert code == 2 and err.count("\n") == 1 and message in err and "Traceback" not in err, err
    assert not out.exists() or not (out / "baseline.pt").exists()


def test_usage_errors(capsys):
    code, _, err = run(capsys, "baseline")
    assert code == 2 and err.count("\n") == 1
    code, _, err = run(capsys, "baseline", "ease", "--set", "nokey")
    assert code == 2 and "key=value" in err
    code, _, err = run(capsys, "data")
    assert code == 2
    # an option of another backbone: one sentence naming the backbone it belongs to, nothing written
    code, _, err = run(capsys, "pretrain", "--set", "backend.name=mf", "--set", "backend.ssl_ratio=0.3", "--quiet")
    assert code == 2 and err.count("\n") == 1 and "'ssl_ratio' belongs to sgl, not to backend 'mf'" in err


def test_python_m_entry_point():
    proc = subprocess.run([sys.executable, "-m", "ddrm", "data", "info", "synthetic", "--quiet", "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_users"] == 1000


def test_train_recommend_evaluate_end_to_end(capsys, tmp_path):
    cfg = tmp_path / "t.yaml"
    cfg.write_text(
        "data: {name: synthetic, synthetic: {n_users: 100, n_items: 50, mean_items: 8}}\n"
        "backend: {name: mf}\npretrain: {epochs: 3, eval_every: 3, batch_size: 256, lr: 0.01}\n"
        "ddrm: {steps: 4, dims: [16], fusion_choices: [0, 0.5, 1]}\ntrain: {epochs: 2, eval_every: 1, batch_size: 256}\n")
    out = tmp_path / "run"
    code, stdout, err = run(capsys, "train", "--config", str(cfg), "--output", str(out), "--json", "--quiet")
    assert code == 0, err
    p = json.loads(stdout)
    assert set(p["metrics"]) == set(p["backend_metrics"]) == {"valid", "test"}
    assert p["metrics"]["test"].keys() == p["backend_metrics"]["test"].keys()
    assert 0 < p["noise_to_signal"] < 1
    assert set(p["fusion_valid"]) == {"0", "0.5", "1"} and p["fusion_valid"][f"{p['fusion']:g}"] == pytest.approx(
        p["metrics"]["valid"]["recall@20"])  # the chosen weight is the one scored, and the checkpoint keeps it
    assert sorted(x.name for x in out.iterdir()) == ["backend.pt", "config.yaml", "ddrm.pt", "metrics.json", "run.log"]
    code, stdout, err = run(capsys, "recommend", "--checkpoint", str(out / "ddrm.pt"), "--user", "3", "--user", "7",
                            "--k", "5")
    assert code == 0, err
    lines = stdout.strip().splitlines()
    assert lines[0] == "user_id,item_id,rank,score" and len(lines) == 11
    assert lines[1].startswith("3,") and lines[-1].startswith("7,") and lines[-1].split(",")[2] == "5"
    code, _, err = run(capsys, "recommend", "--checkpoint", str(out / "ddrm.pt"), "--user", "nobody")
    assert code == 2 and "unknown user id" in err
    code, stdout, _ = run(capsys, "evaluate", "--checkpoint", str(out / "ddrm.pt"), "--json", "--quiet")
    assert json.loads(stdout)["metrics"]["test"]["recall@20"] == pytest.approx(p["metrics"]["test"]["recall@20"])
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    code, _, err = run(capsys, "evaluate", "--checkpoint", str(tmp_path / "broken.pt"))
    assert code == 2 and "checkpoint" in err and "Traceback" not in err


def test_demo_prints_the_table(capsys):
    code, out, err = run(capsys, "demo", "--quiet", "--set", "synthetic.n_users=120", "--set",
                         "synthetic.n_items=60", "--set", "synthetic.mean_items=10")
    assert code == 0, err
    for name in ("MostPop", "EASE", "LightGCN", "LightGCN + DDRM", "noise AUC"):
        assert name in out


def test_progress_bars_only_on_a_terminal_or_when_asked(tmp_path):
    """Written to a file (not a TTY), a training run prints log lines and no bar redraws; --progress draws them."""
    import subprocess
    import sys

    base = [sys.executable, "-m", "ddrm", "pretrain", "--data", "synthetic", "--set", "backend.name=mf",
            "--set", "train.epochs=2", "--set", "train.eval_every=1", "--set", "data.synthetic.n_users=200",
            "--set", "data.synthetic.n_items=100"]
    plain = subprocess.run([*base, "--output", str(tmp_path / "a")], capture_output=True, text=True, check=True)
    assert "%|" not in plain.stderr and "valid recall@20" in plain.stderr  # "NN%|" is how a bar looks
    forced = subprocess.run([*base, "--output", str(tmp_path / "b"), "--progress"], capture_output=True, text=True,
                            check=True)
    assert "%|" in forced.stderr


def test_a_config_file_without_a_dataset_warns_that_it_runs_on_synthetic_data(capsys, tmp_path):
    cfg = tmp_path / "baselines.yaml"  # model settings only, as configs/<dataset>/baselines.yaml
    cfg.write_text("ease: {reg: 10.0}\n")
    small = ["--set", "data.synthetic.n_users=60", "--set", "data.synthetic.n_items=40",
             "--set", "data.synthetic.mean_items=8"]
    code, out, err = run(capsys, "baseline", "ease", "--config", str(cfg), *small, "--json", "--quiet")
    assert code == 0 and json.loads(out)["data"]["name"] == "synthetic"
    assert f"{cfg} names no dataset" in err and "synthetic" in err
    for named in (["--data", "synthetic"], ["--set", "data.name=synthetic"]):  # said explicitly: no warning
        code, _, err = run(capsys, "baseline", "ease", "--config", str(cfg), *small, *named, "--json", "--quiet")
        assert code == 0 and "names no dataset" not in err


def test_every_option_has_help_and_every_command_says_what_it_does():
    import argparse

    from ddrm.cli import build_parser
    from ddrm.reference import commands

    silent, undescribed = [], []
    for path, parser in commands(build_parser()):
        undescribed += [path] if not parser.description else []
        silent += [(path, a.option_strings or a.dest) for a in parser._actions
                   if not a.help and not isinstance(a, argparse._SubParsersAction)]
    assert silent == [] and undescribed == []


def test_cli_reference_page_is_current_and_independent_of_the_terminal(monkeypatch):
    from pathlib import Path

    from ddrm.cli import build_parser, shared_options
    from ddrm.reference import render

    pages = []
    for columns in ("40", "200"):  # argparse wraps usage lines to the terminal's width
        monkeypatch.setenv("COLUMNS", columns)
        pages.append(render(build_parser(), shared_options()))
    assert pages[0] == pages[1]
    page = (Path(__file__).resolve().parents[1] / "docs" / "cli-reference.md").read_text()
    assert page == pages[0], "docs/cli-reference.md is out of date: run python -m ddrm.reference docs"
    for flag in ("--include-config", "--stale-after", "--finished-only", "--variants", "--host", "--split",
                 "--no-final", "--backbone", "--drop-ratio", "--json", "--data-root"):
        assert f"`{flag}" in page
    tune = page[page.index("## `ddrm tune`"):page.index("## `ddrm evaluate`")]
    assert "| `--trials TRIALS` | 20 |" in tune and "| `--pruner {median,halving,none}` | median |" in tune
    assert "| `--json` |" not in tune and "Shared options: `--json`" in tune  # shared ones described once, first


def test_config_reference_block_is_current():
    from pathlib import Path

    from ddrm.experiments.results import markers
    from ddrm.reference import config_keys

    text = (Path(__file__).resolve().parents[1] / "docs" / "configuration.md").read_text()
    begin, end = markers("keys")
    block = text[text.index(begin) + len(begin):text.index(end)].strip()
    assert block == config_keys().strip(), "docs/configuration.md is out of date: run python -m ddrm.reference docs"
    for row in ("| `ddrm.steps` | int | 20 | train |", "| `train.lr` | float | 0.001 | pretrain, train |",
                "| `backend.layer_combine` | mean / normalized_sum | mean | pretrain, train |",
                "| `data.read.split.ratios` | 3 x float | [0.7, 0.1, 0.2] | pretrain, train |",
                "| `output` | str | runs/train (train), runs/pretrain (pretrain) | pretrain, train |",
                "| `sgl` | 3 | `ssl_weight` (float, 0.1), `ssl_temperature` (float, 0.2), `ssl_ratio` (float, 0.1) |",
                "| `ease` | `reg` 1000.0, `max_items` 20000 |"):
        assert row in block


def test_reference_types_and_values_in_words():
    import typing

    from ddrm.reference import _type, _value

    assert _type(int) == "int" and _type(int | None) == "int or null"
    assert _type(typing.Literal["a", "b"]) == "a / b" and _type(typing.Literal[False, True, "auto"]) == "false / true / auto"
    assert _type(list[float]) == "list of float" and _type(tuple[int, ...]) == "list of int"
    assert _type(tuple[float, float, float]) == "3 x float" and _type(tuple[int, str]) == "int, str"
    assert [_value(v) for v in (None, True, (1, 2.5), "x", 1e-05)] == ["null", "true", "[1, 2.5]", "x", "1e-05"]


def test_reference_main_writes_both_pages_atomically(tmp_path, capsys):
    from ddrm.cli import build_parser, shared_options
    from ddrm.reference import config_keys, main, render

    (tmp_path / "configuration.md").write_text("# Configuration\n\nProse kept.\n")
    assert main([str(tmp_path)]) == 0
    assert (tmp_path / "cli-reference.md").read_text() == render(build_parser(), shared_options())
    conf = (tmp_path / "configuration.md").read_text()
    assert conf.startswith("# Configuration\n\nProse kept.\n") and config_keys().strip() in conf
    assert main([str(tmp_path)]) == 0 and (tmp_path / "configuration.md").read_text() == conf  # idempotent
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-reference.md", "configuration.md"]  # no temp files
    capsys.readouterr()
    assert main([str(tmp_path / "missing")]) == 2 and "DOCS_DIR" in capsys.readouterr().err


def test_a_baseline_run_folder_is_a_checkpoint_every_command_takes(capsys, tmp_path):
    from ddrm.serve import InvalidRequest, RecommendationService

    data = ["--data", "synthetic", "--set", "data.synthetic.n_users=120", "--set", "data.synthetic.n_items=60",
            "--set", "data.synthetic.mean_items=10"]
    out = tmp_path / "rp3"
    code, text, err = run(capsys, "baseline", "rp3beta", *data, "--set", "topk=30", "--output", str(out), "--json",
                          "--quiet")
    assert code == 0, err
    fitted = json.loads(text)
    assert sorted(p.name for p in out.iterdir()) == ["baseline.pt", "config.yaml", "metrics.json", "run.log"]
    assert fitted["checkpoint"] == str(out / "baseline.pt")
    code, text, err = run(capsys, "evaluate", "--checkpoint", str(out / "baseline.pt"), "--json", "--quiet")
    assert code == 0, err
    assert json.loads(text)["kind"] == "baseline"
    assert json.loads(text)["metrics"] == fitted["metrics"]  # the saved model is the fitted one
    code, text, err = run(capsys, "baseline", "rp3beta", "--config", str(out / "config.yaml"), "--json", "--quiet")
    assert code == 0, err
    assert json.loads(text)["metrics"] == fitted["metrics"]  # its config.yaml reruns it
    code, text, err = run(capsys, "recommend", "--checkpoint", str(out / "baseline.pt"), "--user", "3", "--k", "5")
    assert code == 0, err
    assert len(text.strip().splitlines()) == 6  # header + 5 items
    code, text, err = run(capsys, "noise", "--checkpoint", str(out / "baseline.pt"), "--top", "3", "--json", "--quiet")
    assert code == 0, err
    assert json.loads(text)["score"] == "rp3beta score"
    service = RecommendationService(out / "baseline.pt")
    assert service.health()["backend"] == "rp3beta" and len(service.recommend_user("3", 5)["items"]) == 5
    folded = service.recommend_history(["1", "2", "3"], 5)["items"]  # an item-item model folds a new user in
    assert len(folded) == 5 and not {"1", "2", "3"} & {i["item_id"] for i in folded}
    code, _, err = run(capsys, "baseline", "ials", *data, "--set", "factors=4", "--set", "iterations=2", "--output",
                       str(tmp_path / "ials"), "--quiet")
    assert code == 0, err
    service = RecommendationService(tmp_path / "ials" / "baseline.pt")
    folded = service.recommend_history(["1", "2"], 5)["items"]  # iALS folds in by its user step
    assert len(folded) == 5 and not {"1", "2"} & {i["item_id"] for i in folded}
    model = service._model(None)
    model.score_history = Recommender.score_history.__get__(model)  # a model without fold-in: one sentence
    with pytest.raises(InvalidRequest, match=r"cannot score a user it was not fitted on .* \(no fold-in\)"):
        service.recommend_history(["1"], 5)
