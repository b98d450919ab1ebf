"""The ``ddrm`` commands: one ``cmd_*`` per command, each turning parsed arguments into a call of the Python API and
its result into text or JSON (``HANDLERS`` maps a command to its function)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
import time
from typing import Any

from ..config.data import DataConfig
from ..config.loader import build_config, deep_merge, load_yaml, parse_overrides
from ..config.training import EvalConfig
from ..tables import format_table, metric_rows
from .parser import UsageError

logger = logging.getLogger("ddrm")


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
    from .. import distributed

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
    from ..data.writer import save_dataset

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
    from ..baselines import BASELINES, run_settings

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
    from ..runs import run_baseline

    payload = run_baseline(args.name, params, data_cfg, eval_cfg, args.quiet, device=args.device or "cpu",
                           output=args.output)
    text = _metrics_text(payload, eval_cfg.ks, f"{payload['model']} {payload['params']} on {payload['data']['name']}")
    _emit(args, payload, text)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from ..config.data import SyntheticConfig
    from ..demo import run_demo

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
        from ..runs import resume_config

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
    from ..config.runs import with_backbone

    return with_backbone(file_cfg, load_yaml(args.backbone), args.backbone)


def _metrics_text(payload: dict[str, Any], ks, title: str) -> str:
    return format_table(metric_rows(payload["metrics"], ks), ["split", "K", "recall", "ndcg", "precision", "mrr",
                                                              "hit"], title=title)


def cmd_pretrain(args: argparse.Namespace) -> int:
    from ..config.runs import PretrainConfig
    from ..runs import run_pretrain

    cfg = _run_config(PretrainConfig, args)
    payload = run_pretrain(cfg, quiet=args.quiet, resume=args.resume is not None)
    title = (f"{cfg.backend.name} on {payload['data']['name']}: best epoch {payload['best_epoch']} of "
             f"{payload['epochs_run']} ({payload['epoch_seconds_mean']:.2f} s/epoch), saved {payload['checkpoint']}")
    _emit(args, payload, _metrics_text(payload, cfg.eval.ks, title))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..config.runs import TrainRunConfig
    from ..runs import run_train

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
    from ..runs import checkpoint_data_config

    return checkpoint_data_config(payload, _data_flags(args, args.data)).load(quiet=args.quiet)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..checkpoint import load_checkpoint
    from ..runs import CHECKPOINT_KINDS, evaluate_splits, load_model

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
    from .. import cleaning
    from ..checkpoint import load_checkpoint
    from ..data.writer import save_dataset
    from ..runs import CHECKPOINT_KINDS, load_model

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

    from ..checkpoint import load_checkpoint
    from ..runs import CHECKPOINT_KINDS, load_model

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

        from ..serve.app import ENV_PREFIX, create_app
    except ImportError:
        raise UsageError("ddrm serve needs the serve extra: pip install 'ddrm[serve]'.") from None
    import torch

    from ..serve import RecommendationService

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

    from ..config.tuning import TuneOptions
    from ..tuning import tune

    opts = TuneOptions(model=args.model, trials=args.trials, timeout=args.timeout, storage=args.storage,
                       study=args.study, space=args.space, output=args.output, pruner=args.pruner,
                       prune_after=args.prune_after, seed=args.seed if args.seed is not None else 0,
                       worker=args.worker, final=args.final, stale_after=args.stale_after,
                       include_config=args.include_config, quiet=args.quiet)
    from ..baselines import run_settings
    from ..tuning import resolve_model

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
    from ..training import resolve_device

    return str(resolve_device(name))


def cmd_experiment(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .. import experiments

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
        from ..experiments.cells import BASELINE_NAMES

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

        from ..experiments.results import update_results

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
