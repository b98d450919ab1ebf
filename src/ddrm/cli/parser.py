"""The ``ddrm`` argument parser: every command, option and help line (docs/cli-reference.md is generated from it)."""

from __future__ import annotations

import argparse

from .. import __version__
from ..errors import DDRMError


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
    from ..baselines import BASELINES

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
