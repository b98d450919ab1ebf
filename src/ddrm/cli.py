"""Command-line interface: a thin argparse layer over the Python API. ``main(argv) -> int``."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from . import __version__
from .config.data import DataConfig
from .config.loader import build_config, deep_merge, load_yaml, parse_overrides
from .config.training import EvalConfig
from .errors import DDRMError
from .interrupt import TrainingInterrupted
from .tables import format_table, metric_rows

logger = logging.getLogger("ddrm")


class UsageError(DDRMError):
    """Wrong command-line usage."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one sentence, exit 2, no usage dump
        raise UsageError(f"{message} (see '{self.prog} --help').")


def _common(quiet_json: bool = True, data: bool = True) -> argparse.ArgumentParser:
    """The options most commands share (``quiet_json``: output, logging, seed, device; ``data``: where data is read
    from), as a parent parser."""
    p = argparse.ArgumentParser(add_help=False)
    if quiet_json:
        p.add_argument("--json", action="store_true", help="print one JSON object to stdout")
        p.add_argument("--quiet", action="store_true", help="no progress bars or info logs")
        p.add_argument("--progress", action="store_true",
                       help="draw progress bars even when stderr is not a terminal (default: only on a terminal)")
        p.add_argument("--seed", type=int, default=None, help="random seed (default: the config's, else 0)")
        p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default: the config's, else cpu)")
    if data:
        p.add_argument("--data-root", default=None, help="folder holding named datasets (default $DDRM_DATA or cache)")
        p.add_argument("--format", default=None, help="force the reader: diffrec, lightgcn, recbole, csv, movielens")
    return p


def shared_options() -> argparse.ArgumentParser:
    """Every option of :func:`_common` (the reference page describes them once)."""
    return _common()


_BACKBONE_HELP = ("a backend's 'ddrm pretrain' config (e.g. the best.yaml of its 'ddrm tune'): DDRM's backend is "
                  "trained from its backend and train sections, replacing the config's backend")


def build_parser() -> argparse.ArgumentParser:
    from .baselines import BASELINES

    parser = _Parser(prog="ddrm", description="Denoising Diffusion Recommender Model (DDRM): data, baselines, backends, "
                                              "DDRM training, tuning, evaluation, experiments and serving.")
    parser.add_argument("--version", action="version", version=f"ddrm {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="COMMAND")
    common = _common()

    p_data = sub.add_parser("data", help="inspect or prepare datasets")
    dsub = p_data.add_subparsers(dest="data_command", parser_class=_Parser, metavar="ACTION")
    p_info = dsub.add_parser("info", parents=[common], help="users, items, interactions per split, density, overlaps")
    p_info.add_argument("data", help="dataset name or path")
    p_prep = dsub.add_parser("prepare", parents=[common], help="split raw ratings and/or inject noise; write a folder")
    p_prep.add_argument("data", help="dataset name or path (raw ratings are split; split data is kept)")
    p_prep.add_argument("--output", "-o", required=True, help="output folder (written atomically)")
    p_prep.add_argument("--method", default="auto", choices=["auto", "chrono", "chrono-user", "random"],
                        help="how unsplit ratings are split: chrono (global time order), chrono-user (each user's "
                             "own time order), random; auto: chrono where timestamps exist, else random")
    p_prep.add_argument("--ratios", type=float, nargs=3, default=[0.7, 0.1, 0.2], metavar=("TRAIN", "VALID", "TEST"),
                        help="shares of the split (default 0.7 0.1 0.2)")
    p_prep.add_argument("--mode", default="all", choices=["all", "clean", "noisy"],
                        help="noisy: low ratings stay in train/valid, test is clean; clean: drop them everywhere")
    p_prep.add_argument("--threshold", type=float, default=4.0, help="rating threshold (default 4)")
    p_prep.add_argument("--noise-ratio", type=float, default=0.0, help="inject this ratio of random noise into train")

    p_base = sub.add_parser("baseline", parents=[common], help="fit and evaluate a simple baseline")
    p_base.add_argument("name", help="mostpop, itemknn, ease, rp3beta, ials (ddrm[ials]), diffrec or multvae")
    p_base.add_argument("--config", default=None,
                        help="YAML with data / eval sections and a section named after the baseline (its parameters), "
                             "e.g. the best.yaml of 'ddrm tune' or configs/<dataset>/baselines.yaml")
    p_base.add_argument("--data", default=None, help="dataset name or path (default: the config's, else synthetic)")
    p_base.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="hyper-parameter (e.g. reg=1000) or dotted data./eval. option; repeatable")
    p_base.add_argument("--output", default=None, metavar="DIR",
                        help="also write a run folder: the fitted model as baseline.pt (for evaluate, recommend, "
                             "noise and serve), config.yaml (which --config takes), metrics.json and run.log")

    for name, text in (("pretrain", "train a backend (mf, lightgcn, sgl; with T-CE / R-CE) or compute / import "
                                    "embeddings (ials, ease-factors, import)"),
                       ("train", "train DDRM on a backend (trained here, imported, or from a checkpoint)")):
        p_run = sub.add_parser(name, parents=[common], help=text)
        p_run.add_argument("--config", default=None, help="YAML config file (see configs/)")
        p_run.add_argument("--resume", default=None, metavar="RUN_DIR",
                           help="continue the interrupted run in RUN_DIR with its own config.yaml")
        p_run.add_argument("--data", default=None, help="dataset name or path (overrides data.name)")
        p_run.add_argument("--output", default=None, help="run folder (overrides output)")
        p_run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                           help="dotted config override, e.g. train.lr=0.001; repeatable")
        if name == "train":
            p_run.add_argument("--backbone", default=None, metavar="FILE", help=_BACKBONE_HELP)

    p_tune = sub.add_parser("tune", parents=[common], help="tune a model's hyper-parameters on validation (Optuna)")
    p_tune.add_argument("--model", required=True, metavar="NAME",
                        help="mostpop, itemknn, rp3beta, ease, ials, diffrec, multvae, mf, lightgcn, sgl (each also "
                             "-tce / -rce, e.g. lightgcn-tce) or ddrm")
    p_tune.add_argument("--config", default=None, help="the config every trial starts from (as for baseline / "
                                                          "pretrain / train); for ddrm it names the backend")
    p_tune.add_argument("--data", default=None, help="dataset name or path (overrides data.name)")
    p_tune.add_argument("--trials", type=int, default=20, help="the study's total of finished trials (default 20)")
    p_tune.add_argument("--timeout", type=float, default=None, metavar="S", help="start no trial after S seconds")
    p_tune.add_argument("--storage", default=None, metavar="URL",
                        help="Optuna storage: an RDB URL (sqlite:///f.db, postgresql://...) or a journal file path, "
                             "shared by several workers (default: OUTPUT/study.db)")
    p_tune.add_argument("--study", default=None, help="study name (default MODEL-DATASET)")
    p_tune.add_argument("--space", default=None, metavar="FILE", help="search space YAML (default: the shipped one)")
    p_tune.add_argument("--output", default=None, help="output folder (default runs/tune/STUDY)")
    p_tune.add_argument("--pruner", default="median", choices=["median", "halving", "none"],
                        help="stop unpromising trained trials early (default median)")
    p_tune.add_argument("--prune-after", type=int, default=0, metavar="EPOCHS",
                        help="prune no trial at an epoch below EPOCHS (default 0: from its first validation; "
                             "higher spares slow starters such as low learning rates)")
    p_tune.add_argument("--worker", type=int, default=0, help="this worker's index when several share a study")
    p_tune.add_argument("--no-final", dest="final", action="store_false",
                        help="skip refitting the best trial and its single test evaluation (extra workers)")
    p_tune.add_argument("--include-config", action="store_true",
                        help="also run the config's own values of the searched parameters as a trial (once per "
                             "study), so the tuned best never validates below the config")
    p_tune.add_argument("--stale-after", type=int, default=600, metavar="S",
                        help="with an RDB storage, a trial whose worker went silent for S seconds (killed process "
                             "or machine) is marked failed and its parameters retried once (default 600)")
    p_tune.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="dotted override of the starting config; repeatable")
    p_tune.add_argument("--backbone", default=None, metavar="FILE", help=_BACKBONE_HELP + " (for --model ddrm)")

    p_eval = sub.add_parser("evaluate", parents=[common], help="evaluate a checkpoint on valid and test")
    p_eval.add_argument("--checkpoint", required=True, help="a ddrm.pt, backend.pt or baseline.pt checkpoint")
    p_eval.add_argument("--data", default=None, help="dataset name or path (default: the one in the checkpoint)")
    p_eval.add_argument("--split", nargs="+", default=["valid", "test"], choices=["valid", "test"],
                        help="the splits to evaluate (default both)")
    p_eval.add_argument("--ks", type=int, nargs="+", default=None, help="cut-offs (default 10 20 50 100)")

    p_noise_cmd = sub.add_parser("noise", parents=[common],
                                 help="the training interactions a model finds most likely to be noise; a cleaned copy")
    p_noise_cmd.add_argument("--checkpoint", required=True,
                             help="a ddrm.pt (DDRM's reweighting score), backend.pt or baseline.pt (the model's "
                                  "own score)")
    p_noise_cmd.add_argument("--data", default=None, help="dataset name or path (default: the one in the checkpoint)")
    p_noise_cmd.add_argument("--top", type=int, default=20, help="list the N most suspect interactions (default 20)")
    p_noise_cmd.add_argument("--drop-ratio", type=float, default=None, metavar="R",
                             help="write the dataset without the R share of most suspect training interactions")
    p_noise_cmd.add_argument("--output", "-o", default=None, help="folder of the cleaned dataset (with --drop-ratio)")
    p_noise_cmd.add_argument("--threshold", type=float, default=4.0,
                             help="with ratings and no noise label, rating < THRESHOLD counts as noise for the AUC")

    p_rec = sub.add_parser("recommend", parents=[common], help="top-K items for the users given (raw ids in and out)")
    p_rec.add_argument("--checkpoint", required=True, help="a ddrm.pt, backend.pt or baseline.pt checkpoint")
    p_rec.add_argument("--user", required=True, action="append", help="raw user id; repeatable")
    p_rec.add_argument("--k", type=int, default=20, help="list length (default 20)")
    p_rec.add_argument("--data", default=None, help="dataset name or path (default: the one in the checkpoint)")

    p_serve = sub.add_parser("serve", parents=[_common()], help="HTTP recommendation service + web page (ddrm[serve])")
    p_serve.add_argument("--checkpoint", required=True, help="a ddrm.pt, backend.pt or baseline.pt checkpoint")
    p_serve.add_argument("--data", default=None, help="dataset name or path (default: the one in the checkpoint)")
    p_serve.add_argument("--items", default=None, help="item metadata file (item_id, title, genres columns)")
    p_serve.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p_serve.add_argument("--port", type=int, default=8000, help="port (default 8000; 0 = any free port)")
    p_serve.add_argument("--workers", type=int, default=1, help="worker processes (each loads the model once)")
    p_serve.add_argument("--threads", type=int, default=1, help="torch threads per worker (default 1)")

    p_exp = sub.add_parser("experiment", help="regenerate the paper's table, noise curve or ablation")
    esub = p_exp.add_subparsers(dest="experiment", parser_class=_Parser, metavar="KIND")
    exp_common = argparse.ArgumentParser(add_help=False)
    exp_common.add_argument("--seeds", type=int, default=1, help="number of seeds (0 .. N-1; default 1)")
    exp_common.add_argument("--output", default=None, help="experiment folder (default runs/experiments/KIND)")
    exp_common.add_argument("--configs", default="configs", help="folder of per-dataset configs (default configs)")
    exp_common.add_argument("--quick", action="store_true", help="tiny synthetic data and settings (seconds)")
    exp_common.add_argument("--ddrm-epochs", type=int, default=None, help="cap the epochs of every DDRM run")
    exp_common.add_argument("--records", default=None, metavar="DIR",
                            help="keep each finished cell as one file in DIR (commit or sync it) and take cells "
                                 "from there before running them: an experiment that outlives its machine")
    exp_common.add_argument("--finished-only", action="store_true",
                            help="run no cell and load no data: build the outcome from the cells already finished "
                                 "(in the output folder or, with --records, in DIR); a row shows the seeds it has "
                                 "and names those not run yet")
    exp_common.add_argument("--results", default=None, metavar="FILE",
                            help="also write this experiment's block (command, table, plot) into a Markdown file, "
                                 "e.g. docs/RESULTS.md, replacing only its own previous block")
    p_table = esub.add_parser("table", parents=[common, exp_common], help="baselines, backends, + T-CE / R-CE / DDRM")
    p_table.add_argument("--datasets", nargs="+", default=["ml-1m_noisy"],
                         help="named datasets or paths, each with its configs in CONFIGS/<dataset>/ (default ml-1m_noisy)")
    p_table.add_argument("--backends", nargs="*", default=["mf", "lightgcn", "sgl"],
                         help="the backends whose rows (and --methods on them) the table has; none: baselines only "
                              "(default mf lightgcn sgl)")
    p_table.add_argument("--baselines", nargs="*", default=list(BASELINES),
                         help=f"simple baselines to add as rows; none: no baseline (default {' '.join(BASELINES)})")
    p_table.add_argument("--methods", nargs="+", default=["backend", "tce", "rce", "ddrm"],
                         help="backend, tce, rce, ddrm, fusion (DDRM fused with the backend, weight chosen on "
                              "validation); default all but fusion")
    p_table.add_argument("--tuned", action="store_true",
                         help="take each model's config from CONFIGS/<dataset>/tuned/<model>.yaml (written by "
                              "'ddrm tune'; T-CE / R-CE: <backend>-tce.yaml, DDRM: ddrm-<backend>.yaml) where present")
    p_noise = esub.add_parser("noise", parents=[common, exp_common], help="metrics against injected noise ratio")
    p_noise.add_argument("--dataset", default="yelp", help="named dataset or path (default yelp)")
    p_noise.add_argument("--backend", default="lightgcn", help="the backend of every row (default lightgcn)")
    p_noise.add_argument("--ratios", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
                         help="shares of random (user, item) pairs added to train, one curve point each "
                              "(default 0 0.1 0.2 0.3 0.4 0.5)")
    p_noise.add_argument("--methods", nargs="+", default=["backend", "tce", "rce", "ddrm"],
                         help="backend, tce, rce, ddrm, fusion: one curve each (default all but fusion)")
    p_abl = esub.add_parser("ablation", parents=[common, exp_common], help="DDRM switches off one at a time, T sweep")
    p_abl.add_argument("--dataset", default="ml-1m_noisy", help="named dataset or path (default ml-1m_noisy)")
    p_abl.add_argument("--backend", default="mf", help="the backend DDRM runs on (default mf)")
    p_abl.add_argument("--steps", type=int, nargs="*", default=[5, 10, 50], help="values of T to sweep")
    p_abl.add_argument("--variants", nargs="+", default=None, metavar="NAME",
                       help="subset of: full, 'no reconstruction', 'no reweighting', 'no user denoiser', "
                            "'no item denoiser', 'pure-noise start' (default all)")

    p_demo = sub.add_parser("demo", parents=[_common(data=False)],
                            help="MostPop, EASE, LightGCN and LightGCN + DDRM on built-in synthetic data with planted noise")
    p_demo.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="synthetic data option, e.g. synthetic.n_users=500")
    _describe(parser)
    return parser


def _describe(parser: argparse.ArgumentParser) -> None:
    """Give every sub-command the line that lists it in its parent's help as its own description, so that
    ``ddrm tune --help`` starts by saying what the command does."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for listed in action._choices_actions:
                child = action.choices[listed.dest]
                child.description = child.description or listed.help
                _describe(child)


def _setup_logging(quiet: bool) -> None:
    """Log records on stderr: INFO and up, WARNING and up with ``--quiet`` (a run folder's ``run.log`` takes INFO
    whatever this shows: ``runs.run_log``)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


def _data_flags(args: argparse.Namespace, name: str | None = None) -> dict[str, Any]:
    """The data section given by ``--data`` (or ``name``), ``--data-root`` and ``--format``; absent flags omitted."""
    flags: dict[str, Any] = {}
    if name is not None:
        flags["name"] = name
    if args.data_root is not None:
        flags["root"] = args.data_root
    if args.format is not None:
        flags["read"] = {"format": args.format}
    return flags


def _config_file(args: argparse.Namespace) -> dict[str, Any]:
    """The ``--config`` file ({} without one). A file that names no dataset, run without ``--data`` or
    ``--set data.name=...``, falls back to the built-in synthetic data: said as a warning, since a shared file of
    model settings (such as ``configs/<dataset>/baselines.yaml``) is easily taken for a dataset's config."""
    if not args.config:
        return {}
    cfg = load_yaml(args.config)
    sections = [cfg.get("data"), parse_overrides(getattr(args, "overrides", [])).get("data")]
    if getattr(args, "data", None) is None and not any(isinstance(d, dict) and "name" in d for d in sections):
        logger.warning("%s names no dataset (no data.name) and neither --data nor --set data.name is given: "
                       "running on the built-in synthetic data.", args.config)
    return cfg


def _data_config(args: argparse.Namespace, spec: str, extra: dict[str, Any] | None = None) -> DataConfig:
    return build_config(DataConfig, overrides=deep_merge(_data_flags(args, spec), extra or {}))


def _emit(args: argparse.Namespace, payload: dict[str, Any], text: str) -> None:
    from . import distributed

    if not distributed.is_main():
        return
    if args.json:
        sys.stdout.write(json.dumps(payload) + "\n")
    else:
        sys.stdout.write(text + "\n")


def cmd_data_info(args: argparse.Namespace) -> int:
    data = _data_config(args, args.data).load(quiet=args.quiet)
    s = data.summary()
    rows = [{"split": k, **{c: v[c] for c in ("interactions", "users", "items", "density")}}
            for k, v in s["splits"].items()]
    text = (f"{s['name']}: {s['n_users']} users x {s['n_items']} items (fingerprint {s['fingerprint']})\n"
            + format_table(rows, ["split", "interactions", "users", "items", "density"])
            + "\noverlaps: " + ", ".join(f"{k}={v}" for k, v in s["overlaps"].items()))
    _emit(args, s, text)
    return 0


def cmd_data_prepare(args: argparse.Namespace) -> int:
    from .data.writer import save_dataset

    seed = args.seed if args.seed is not None else 0
    split = {"method": args.method, "ratios": args.ratios, "mode": args.mode, "threshold": args.threshold,
             "seed": seed}
    cfg = _data_config(args, args.data, {"read": {"split": split, "seed": seed},
                                         "noise_ratio": args.noise_ratio, "noise_seed": seed})
    data = cfg.load(quiet=args.quiet)
    out = save_dataset(data, args.output)
    s = data.summary()
    s["output"] = str(out)
    text = f"wrote {out}: " + ", ".join(f"{k} {v['interactions']}" for k, v in s["splits"].items())
    _emit(args, s, text)
    return 0


def _split_overrides(items: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``--set`` items -> (model params, run options under data./eval.)."""
    parsed = parse_overrides(items)
    run = {k: parsed.pop(k) for k in ("data", "eval") if k in parsed}
    return parsed, run


def cmd_baseline(args: argparse.Namespace) -> int:
    from .baselines import BASELINES, run_settings

    params, run = _split_overrides(args.overrides)
    file_cfg = _config_file(args)
    unknown = sorted(set(file_cfg) - {"data", "eval", *BASELINES})
    if unknown:
        raise UsageError(f"{args.config}: unknown section {unknown[0]!r} (a baseline config holds data, eval and "
                         f"one section per baseline).")
    params = {**deep_merge(file_cfg.get(args.name.lower(), {}) or {}, params),
              **run_settings(args.name, args.seed, args.device, args.quiet)}
    data_cfg = build_config(DataConfig, overrides=deep_merge(deep_merge(file_cfg.get("data", {}),
                                                                        _data_flags(args, args.data)),
                                                             run.get("data", {})))  # no name anywhere: synthetic
    eval_cfg = build_config(EvalConfig, overrides=deep_merge(file_cfg.get("eval", {}), run.get("eval", {})))
    from .runs import run_baseline

    payload = run_baseline(args.name, params, data_cfg, eval_cfg, args.quiet, device=args.device or "cpu",
                           output=args.output)
    text = _metrics_text(payload, eval_cfg.ks, f"{payload['model']} {payload['params']} on {payload['data']['name']}")
    _emit(args, payload, text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from .config.data import SyntheticConfig
    from .demo import run_demo

    over = parse_overrides(args.overrides)
    unknown = sorted(set(over) - {"synthetic"})
    if unknown:
        raise UsageError(f"demo accepts only synthetic.* overrides, not {unknown[0]!r}.")
    seed = args.seed if args.seed is not None else 0
    syn = build_config(SyntheticConfig, overrides=deep_merge({"seed": seed}, over.get("synthetic", {})))
    p = run_demo(syn, seed, args.quiet, args.device or "cpu")
    train = p["data"]["splits"]["train"]
    title = (f"ddrm demo: synthetic data, {p['data']['n_users']} users x {p['data']['n_items']} items, "
             f"{train['interactions']} train interactions of which {train.get('noisy_interactions', 0)} planted "
             f"noise; seed {seed}; test split, full ranking")
    note = ("noise AUC: how well the model's score of a training interaction separates clean from planted noisy "
            "ones (0.5 = not at all); for DDRM it is the reweighting score.")
    _emit(args, p, format_table(p["rows"], ["model", "recall@20", "ndcg@20", "valid recall@20", "noise AUC",
                                            "seconds"], title=title)
          + f"\n{note}\n{p['verdict']}\ntotal {p['seconds']:.0f} s")
    return 0


def _run_config(cls, args: argparse.Namespace):
    """Defaults < --config file < command-line flags < --set overrides; or the run folder's config with --resume."""
    if args.resume is not None:
        given = [f for f, v in (("--config", args.config), ("--data", args.data), ("--output", args.output),
                                ("--seed", args.seed), ("--set", args.overrides), ("--device", args.device),
                                ("--backbone", getattr(args, "backbone", None))) if v]
        if given:
            raise UsageError(f"--resume takes everything from {args.resume}/config.yaml; drop {given[0]}.")
        from .runs import resume_config

        return resume_config(cls, args.resume)
    flags: dict[str, Any] = {}
    data = _data_flags(args, args.data)
    if data:
        flags["data"] = data
    if args.seed is not None:
        flags["seed"] = args.seed
    if args.device is not None:
        flags["train"] = {"device": args.device}
        if "pretrain" in {f.name for f in dataclasses.fields(cls)}:
            flags["pretrain"] = {"device": args.device}
    if args.output is not None:
        flags["output"] = args.output
    file_cfg = _backbone(args, _config_file(args))
    return build_config(cls, overrides=deep_merge(deep_merge(file_cfg, flags), parse_overrides(args.overrides)))


def _backbone(args: argparse.Namespace, file_cfg: dict[str, Any]) -> dict[str, Any]:
    """``file_cfg`` with the backend of ``--backbone FILE`` (trained at the start of the run), if given."""
    if getattr(args, "backbone", None) is None:
        return file_cfg
    from .config.runs import with_backbone

    return with_backbone(file_cfg, load_yaml(args.backbone), args.backbone)


def _metrics_text(payload: dict[str, Any], ks, title: str) -> str:
    return format_table(metric_rows(payload["metrics"], ks), ["split", "K", "recall", "ndcg", "precision", "mrr",
                                                              "hit"], title=title)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from .config.runs import PretrainConfig
    from .runs import run_pretrain

    cfg = _run_config(PretrainConfig, args)
    payload = run_pretrain(cfg, quiet=args.quiet, resume=args.resume is not None)
    title = (f"{cfg.backend.name} on {payload['data']['name']}: best epoch {payload['best_epoch']} of "
             f"{payload['epochs_run']} ({payload['epoch_seconds_mean']:.2f} s/epoch), saved {payload['checkpoint']}")
    _emit(args, payload, _metrics_text(payload, cfg.eval.ks, title))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .config.runs import TrainRunConfig
    from .runs import run_train

    cfg = _run_config(TrainRunConfig, args)
    p = run_train(cfg, quiet=args.quiet, resume=args.resume is not None)
    rows = [{"model": name, "split": s, **{m: ms[s][m] for m in ("recall@20", "ndcg@20")}}
            for name, ms in ((f"{p['backend']} (backend)", p["backend_metrics"]), (f"{p['backend']} + DDRM", p["metrics"]))
            for s in ("valid", "test") if s in ms and "recall@20" in ms[s]]
    title = (f"DDRM on {p['data']['name']}: best epoch {p['best_epoch']} of {p['epochs_run']} "
             f"({p['epoch_seconds_mean']:.2f} s/epoch), noise-to-signal at T {p['noise_to_signal']:.3g}, "
             f"saved {p['checkpoint']}")
    _emit(args, p, format_table(rows, ["model", "split", "recall@20", "ndcg@20"], title=title) if rows else title)
    return 0


def _checkpoint_data(args: argparse.Namespace, payload: dict[str, Any]):
    """The dataset a checkpoint was trained on, unless --data / --data-root / --format say otherwise."""
    from .runs import checkpoint_data_config

    return checkpoint_data_config(payload, _data_flags(args, args.data)).load(quiet=args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .checkpoint import load_checkpoint
    from .runs import CHECKPOINT_KINDS, evaluate_splits, load_model

    payload = load_checkpoint(args.checkpoint, CHECKPOINT_KINDS)
    data = _checkpoint_data(args, payload)
    eval_dict = dict(payload.get("config", {}).get("eval", {}))
    if args.ks:
        eval_dict = {"ks": args.ks, "metric": f"recall@{args.ks[0]}"}
    eval_cfg = build_config(EvalConfig, overrides=eval_dict)
    model = load_model(args.checkpoint, data, args.device or "cpu")
    out = {"command": "evaluate", "checkpoint": str(args.checkpoint), "kind": payload["kind"],
           "data": {"name": data.name, "fingerprint": data.fingerprint()},
           "metrics": evaluate_splits(model, data, eval_cfg, getattr(model, "device_", "cpu"),
                                      splits=tuple(args.split))}
    _emit(args, out, _metrics_text(out, eval_cfg.ks, f"{args.checkpoint} on {data.name}"))
    return 0


def cmd_noise(args: argparse.Namespace) -> int:
    from . import cleaning
    from .checkpoint import load_checkpoint
    from .data.writer import save_dataset
    from .runs import CHECKPOINT_KINDS, load_model

    if args.top < 0:
        raise UsageError(f"--top must be >= 0, got {args.top}.")
    if args.drop_ratio is not None and not 0 <= args.drop_ratio < 1:
        raise UsageError(f"--drop-ratio must lie in [0, 1), got {args.drop_ratio}.")
    if (args.drop_ratio is None) != (args.output is None):
        raise UsageError("--drop-ratio and --output go together: the share to drop and the folder to write.")
    payload = load_checkpoint(args.checkpoint, CHECKPOINT_KINDS)
    data = _checkpoint_data(args, payload)
    model = load_model(args.checkpoint, data, args.device or "cpu")
    scores = cleaning.interaction_scores(model, data)
    score_name = {"ddrm": "DDRM reweighting score", "backend": "backend score"}.get(payload["kind"],
                                                                                  f"{model.name} score")
    suspects = cleaning.most_suspect(scores, data, args.top) if args.top else []
    report = cleaning.auc_report({score_name: scores, "item popularity": cleaning.popularity_scores(data)}, data,
                                 args.threshold)
    out: dict[str, Any] = {"command": "noise", "checkpoint": str(args.checkpoint), "kind": payload["kind"],
                           "score": score_name, "interactions": int(scores.size), "suspects": suspects, **report}
    lines = [f"{score_name} of {scores.size} training interactions of {data.name} (low = likely noise)"]
    if suspects:
        lines.append(format_table(suspects, ["rank", "user_id", "item_id", "score"]))
    if report:
        lines.append(f"AUC separating clean from noisy ({report['labels']}: {report['noisy']} of "
                     f"{report['interactions']}): " + ", ".join(f"{k} {v:.3f}" for k, v in report["auc"].items()))
    if args.drop_ratio is not None:
        cleaned = cleaning.drop_suspects(data, scores, args.drop_ratio)
        folder = save_dataset(cleaned, args.output)
        out.update({"output": str(folder), "kept": int(cleaned.train.nnz), "dropped": int(data.train.nnz
                                                                                          - cleaned.train.nnz)})
        lines.append(f"wrote {folder}: {out['dropped']} of {data.train.nnz} training interactions dropped; "
                     f"retrain any model on it with --data {folder}")
    _emit(args, out, "\n".join(lines))
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    import torch

    from .checkpoint import load_checkpoint
    from .runs import CHECKPOINT_KINDS, load_model

    if not 1 <= args.k <= 1000:
        raise UsageError(f"--k must be between 1 and 1000, got {args.k}.")
    payload = load_checkpoint(args.checkpoint, CHECKPOINT_KINDS)
    data = _checkpoint_data(args, payload)
    model = load_model(args.checkpoint, data, args.device or "cpu")
    users = [data.user_index(u) for u in args.user]
    items, scores = model.recommend(torch.tensor(users), k=args.k)
    recs = [{"user_id": raw, "items": [{"item_id": str(data.raw_item(int(i))), "rank": r + 1, "score": float(s)}
                                       for r, (i, s) in enumerate(zip(items[k].tolist(), scores[k].tolist(),
                                                                      strict=True))]}
            for k, raw in enumerate(args.user)]
    lines = ["user_id,item_id,rank,score"] + [f"{rec['user_id']},{it['item_id']},{it['rank']},{it['score']:.6f}"
                                              for rec in recs for it in rec["items"]]
    _emit(args, {"command": "recommend", "model": payload["kind"], "k": args.k, "recommendations": recs},
          "\n".join(lines))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    try:
        import uvicorn

        from .serve.app import ENV_PREFIX, create_app
    except ImportError:
        raise UsageError("ddrm serve needs the serve extra: pip install 'ddrm[serve]'.") from None
    import torch

    from .serve import RecommendationService

    if args.workers < 1 or args.threads < 1 or not 0 <= args.port <= 65535:
        raise UsageError("--workers and --threads must be >= 1 and --port in 0..65535.")
    torch.set_num_threads(args.threads)
    overrides = _data_flags(args, args.data)
    device = args.device or "cpu"
    service = RecommendationService(args.checkpoint, data_overrides=overrides, items_file=args.items,
                                    device=device)  # loaded here: a bad checkpoint fails before listening
    h = service.health()
    logger.info("serving %s (%s on %s, %d users x %d items) on http://%s:%s", args.checkpoint, h["model"],
                h["dataset"], h["n_users"], h["n_items"], args.host, args.port)
    level = "warning" if args.quiet else "info"
    if args.workers == 1:
        uvicorn.run(create_app(service), host=args.host, port=args.port, log_level=level)
    else:
        os.environ.update({ENV_PREFIX + "CHECKPOINT": str(args.checkpoint), ENV_PREFIX + "DATA": json.dumps(overrides),
                           ENV_PREFIX + "ITEMS": args.items or "", ENV_PREFIX + "DEVICE": device,
                           ENV_PREFIX + "THREADS": str(args.threads)})
        del service
        uvicorn.run("ddrm.serve.app:app_from_env", factory=True, host=args.host, port=args.port,
                    workers=args.workers, log_level=level)
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    import shlex

    from .config.tuning import TuneOptions
    from .tuning import tune

    opts = TuneOptions(model=args.model, trials=args.trials, timeout=args.timeout, storage=args.storage,
                       study=args.study, space=args.space, output=args.output, pruner=args.pruner,
                       prune_after=args.prune_after, seed=args.seed if args.seed is not None else 0,
                       worker=args.worker, final=args.final, stale_after=args.stale_after,
                       include_config=args.include_config, quiet=args.quiet)
    from .baselines import run_settings
    from .tuning import resolve_model

    spec = resolve_model(args.model)
    overrides = list(args.overrides)  # --seed seeds the sampler and every trial; --device runs the trained models
    if spec.kind == "baseline":  # as in `ddrm baseline` (its progress bars are silenced by the trials themselves)
        overrides += [f"{spec.name}.{k}={v}" for k, v in run_settings(spec.name, args.seed, args.device).items()]
    else:
        overrides += [f"seed={args.seed}"] if args.seed is not None else []
        overrides += [f"train.device={args.device}"] if args.device is not None else []
    if args.backbone is not None and spec.kind != "train":
        raise UsageError(f"--backbone is for --model ddrm (the backend DDRM runs on), not {args.model}.")
    file_cfg = _backbone(args, _config_file(args))
    p = tune(opts, file_cfg, _data_flags(args, args.data), overrides, "ddrm " + shlex.join(args.argv))
    best = p["best"]
    lines = [f"{p['model']} on {p['data']['name']}: study {p['study']} ({p['storage']}), "
             + ", ".join(f"{v} {k}" for k, v in p["trials"].items() if v) + f", {p['seconds']:.0f} s",
             f"best trial {best['number']}: valid {p['metric']} {best['valid']:.4f} with "
             + ", ".join(f"{k}={v}" for k, v in best["params"].items())]
    if "metrics" in p:
        lines.append(f"refitted: valid {p['refit_valid']:.4f}, test " + ", ".join(
            f"{m} {p['metrics']['test'][m]:.4f}" for m in ("recall@20", "ndcg@20") if m in p["metrics"]["test"]))
        lines.append(f"best config: {p['best_config']}; "
                     + (f"refitted model: {p['best_checkpoint']}; " if p.get("best_checkpoint") else "")
                     + f"trials: {p['trials_csv']}"
                     + (f"; plot: {p['plot']}" if p.get("plot") else ""))
    _emit(args, p, "\n".join(lines))
    return 0


def _device(name: str | None) -> str | None:
    """``--device`` resolved once (``auto`` -> cuda or cpu); an absent CUDA is one sentence here, not a skipped
    cell per run."""
    if name is None:
        return None
    from .training import resolve_device

    return str(resolve_device(name))


def cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from . import experiments

    if args.seeds < 1:
        raise UsageError("--seeds must be >= 1.")
    methods = tuple(getattr(args, "methods", ()) or ())
    unknown = sorted(set(methods) - set(experiments.METHODS))
    if unknown:
        raise UsageError(f"unknown method {unknown[0]!r}; use {', '.join(experiments.METHODS)}.")
    if args.ddrm_epochs is not None and args.ddrm_epochs < 1:
        raise UsageError("--ddrm-epochs must be >= 1.")
    setup = experiments.Setup(configs=Path(args.configs), root=args.data_root, quick=args.quick, quiet=args.quiet,
                              ddrm_epochs=args.ddrm_epochs, tuned=getattr(args, "tuned", False),
                              records=Path(args.records) if args.records else None, device=_device(args.device),
                              finished_only=args.finished_only)
    if args.quick:  # tiny synthetic data stands in for every dataset
        args.datasets, args.dataset = ["synthetic"], "synthetic"
    out = Path(args.output or f"runs/experiments/{args.experiment}{'-quick' if args.quick else ''}"
               f"{'-tuned' if setup.tuned else ''}")
    t0 = time.perf_counter()
    if args.experiment == "table":
        from .experiments.cells import BASELINE_NAMES

        bad = sorted(set(args.baselines) - set(BASELINE_NAMES))
        if bad:
            raise UsageError(f"unknown baseline {bad[0]!r}; use {', '.join(BASELINE_NAMES)}.")
        p = experiments.table(args.datasets, args.backends, args.seeds, out, setup, tuple(args.baselines), methods)
        text = p["markdown"]
    elif args.experiment == "noise":
        if any(not 0 <= r < 1 for r in args.ratios):
            raise UsageError("--ratios must lie in [0, 1).")
        p = experiments.noise(args.dataset, args.backend, args.ratios, args.seeds, out, setup, methods)
        text = p["markdown"] + f"\nplot: {p['plot']}"
    else:
        p = experiments.ablation(args.dataset, args.backend, args.seeds, args.steps, out, setup, args.variants)
        text = p["markdown"] + f"\nplot: {p['plot']}"
    p["seconds"], p["finished_only"] = time.perf_counter() - t0, args.finished_only
    if args.results:
        import shlex

        from .experiments.results import update_results

        if args.experiment == "table":
            what = f"Comparison table — {', '.join(args.datasets)}"
        else:
            what = (f"{'Robustness to injected noise' if args.experiment == 'noise' else 'Ablation'} — "
                    f"{args.dataset}, {args.backend} backend")
        p["results"] = str(update_results(Path(args.results), out.name, what, p,
                                          "ddrm " + shlex.join(getattr(args, "argv", []))))
    _emit(args, p, text + f"\n{p['cells']} cells in {out} ({p['seconds']:.0f} s"
          + (f"; {p['not_run']} not run yet" if p["not_run"] else "") + ")"
          + (f"; block {out.name!r} written to {p['results']}" if args.results else ""))
    return 0


HANDLERS = {"info": cmd_data_info, "prepare": cmd_data_prepare, "baseline": cmd_baseline, "demo": cmd_demo,
            "pretrain": cmd_pretrain, "train": cmd_train, "tune": cmd_tune, "evaluate": cmd_evaluate, "noise": cmd_noise, "recommend": cmd_recommend, "serve": cmd_serve,
            "experiment": cmd_experiment}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (2 for usage and data errors, 130 when interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # the command as typed, for --results
        if args.command is None:
            parser.print_help()
            return 2
        key = args.data_command if args.command == "data" else args.command
        if key is None:
            raise UsageError("'ddrm data' needs an action: info or prepare (see 'ddrm data --help').")
        if key == "experiment" and args.experiment is None:
            raise UsageError("'ddrm experiment' needs a kind: table, noise or ablation.")
        from . import distributed

        if distributed.launched():
            if key not in ("pretrain", "train", "evaluate"):
                raise UsageError(f"'ddrm {key}' does not run under torchrun; use pretrain, train or evaluate.")
            distributed.init_from_env()
            if not distributed.is_main():
                args.quiet = True
        _setup_logging(getattr(args, "quiet", False))
        from .machine import keep_freed_memory

        keep_freed_memory()  # reuse freed activation buffers: fewer page faults per training step
        if getattr(args, "quiet", False):
            import os

            os.environ.setdefault("TQDM_DISABLE", "1")
        elif getattr(args, "progress", False):
            import os

            from .progress import FORCE_ENV

            os.environ[FORCE_ENV] = "1"
        return HANDLERS[key](args)
    except TrainingInterrupted as exc:
        how = exc.how or f"Continue with: ddrm {args.command} --resume {exc.run_dir or '<run folder>'}"
        sys.stderr.write(f"ddrm: {exc}. {how}\n")
        return exc.exit_code
    except DDRMError as exc:
        sys.stderr.write(f"ddrm: error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("ddrm: interrupted.\n")
        return 130
    finally:
        from . import distributed

        distributed.shutdown()


def entry_point() -> None:
    sys.exit(main())
