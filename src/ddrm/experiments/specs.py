"""The three experiments: the comparison table, the noise-ratio sweep and the ablation, as lists of cells.

Hyper-parameters come from config files (``configs/<dataset>/<backend>.yaml`` for a backend, the same with
``backend.denoise`` set for T-CE / R-CE, ``configs/<dataset>/ddrm-<backend>.yaml`` for DDRM,
``configs/<dataset>/baselines.yaml`` for the simple baselines and DiffRec); ``quick`` replaces them with tiny
settings on tiny synthetic data (seconds, for tests and smoke runs).
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

from ..config.loader import deep_merge
from ..errors import ConfigError
from .cells import BASELINE_NAMES, NOT_RUN, Cell, run_cells
from .report import (
    METRICS,
    bar_plot,
    fmt,
    fmt_gain,
    fmt_p,
    line_plot,
    markdown,
    paired_test,
    relative,
    summarize,
    write_csv,
    write_text,
)
from .setup import Setup

logger = logging.getLogger(__name__)

DENOISERS = {"tce": {"denoise": "tce"}, "rce": {"denoise": "rce"}}
METHODS = ("backend", "tce", "rce", "ddrm", "fusion")
SUFFIX = {"tce": " + T-CE", "rce": " + R-CE", "ddrm": " + DDRM", "fusion": " + DDRM (fused)"}
# the fusion weights a "fusion" cell chooses among on validation (0 = the backend's ranking, 1 = DDRM's), unless its
# DDRM config names its own fusion_choices
FUSION_GRID = [round(0.1 * k, 1) for k in range(11)]
LABEL = {"mf": "MF", "lightgcn": "LightGCN", "sgl": "SGL", "mostpop": "MostPop", "itemknn": "ItemKNN",
         "ease": "EASE", "rp3beta": "RP3beta", "diffrec": "DiffRec", "multvae": "Mult-VAE", "ease-factors": "EASE factors",
         "ials": "iALS"}


def _backend_cells(setup: Setup, dataset: str, backend: str, seed: int, section: dict[str, Any], prefix: str,
                   methods: tuple[str, ...], beside_baseline: bool = False) -> list[Cell]:
    """Cells for one backend: alone, + T-CE, + R-CE, + DDRM, + DDRM fused with the backend's scores (the weight
    chosen on validation among ``FUSION_GRID``); the DDRM cells start from the plain backend's checkpoint.

    ``beside_baseline``: the table also has the baseline of the same name (iALS): the backend alone is then the cell
    ``<backend>-backbone`` and the row "iALS (backbone)", apart from the baseline's cell and row."""
    base = setup.backend_config(dataset, backend, section)
    plain = f"{backend}-backbone" if beside_baseline else backend
    cells = [Cell(f"{prefix}/{plain}/seed{seed}", "pretrain", backend, seed, base, section,
                  labels={"method": "backend", "backend": backend, "tuned": setup.tuned_backend(dataset, backend) is not None,
                          **({"suffix": " (backbone)"} if beside_baseline else {})})]
    for m in ("tce", "rce"):
        if m in methods:
            tuned = setup.tuned_config(dataset, f"{backend}-{m}")  # tuned with its denoiser, or the plain recipe + it
            cfg = {**tuned, "data": section} if tuned is not None else deep_merge(base, {"backend": DENOISERS[m]})
            cells.append(Cell(f"{prefix}/{backend}-{m}/seed{seed}", "pretrain", backend, seed, cfg, section,
                              labels={"method": m, "backend": backend, "tuned": tuned is not None,
                                      "plain": cells[0].key}))
    for m in ("ddrm", "fusion"):
        if m in methods:
            cfg = setup.ddrm_config(dataset, backend, section)
            if m == "fusion" and not cfg.get("ddrm", {}).get("fusion_choices"):
                cfg = deep_merge(cfg, {"ddrm": {"fusion_choices": FUSION_GRID}})
            cells.append(Cell(f"{prefix}/{backend}-{m}/seed{seed}", "train", backend, seed, cfg, section,
                              needs=cells[0].key, labels={"method": m, "backend": backend, "plain": cells[0].key,
                                                          "tuned": setup.has_tuned(dataset, f"ddrm-{backend}")}))
    if "backend" not in methods:
        cells[0].labels["hidden"] = True  # still needed by DDRM
    return cells


def _execute(setup: Setup, cells: list[Cell], out: Path) -> dict[str, dict[str, Any]]:
    t0 = time.perf_counter()
    results = run_cells(cells, out / "cells", lambda c: setup.data(c.data), setup.quiet, setup.records,
                        setup.device, setup.finished_only)
    logger.info("experiment finished in %.0f s", time.perf_counter() - t0)
    return results


def _spent(results: dict[str, dict[str, Any]], key: str = "cell_seconds") -> dict[str, float]:
    """Seconds each finished cell took when it ran (resumed cells keep their original time): wall clock, or with
    ``key="cell_cpu_seconds"`` the process's CPU time (recorded by cells run since 2026-12-07)."""
    return {k: float(r[key]) for k, r in results.items() if r.get(key) is not None}


def _provenance(cells: list[Cell], seeds: int, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The payload entries every experiment reports: its cells, seeds, the seconds (wall clock, and CPU where
    recorded) each finished cell took, the
    cells left out as not run yet (``--finished-only``), and how many finished cells ran on which machine (cells
    from before 2026-12-07 did not record it)."""
    machines: dict[str, int] = {}
    for r in results.values():
        if "error" not in r:
            where = r.get("machine", "not recorded")
            machines[where] = machines.get(where, 0) + 1
    return {"cells": len(cells), "seeds": seeds, "cell_seconds": _spent(results),
            "cell_cpu_seconds": _spent(results, "cell_cpu_seconds"),
            "not_run": sum(r.get("error") == NOT_RUN for r in results.values()), "machines": machines}


# ---------------------------------------------------------------------------------------------------- table
def table(datasets: list[str], backends: list[str], seeds: int, out: Path, setup: Setup,
          baselines: tuple[str, ...] = BASELINE_NAMES, methods: tuple[str, ...] = ("backend", "tce", "rce", "ddrm")
          ) -> dict[str, Any]:
    """Rows = baselines, each backend alone, + T-CE, + R-CE, + DDRM (+ DDRM fused: method ``fusion``); mean ± std
    over ``seeds`` seeds."""
    cells: list[Cell] = []
    for ds in datasets:
        section = setup.data_section(ds)
        for seed in range(seeds):
            for b in baselines:
                cells.append(Cell(f"{ds}/{b}/seed{seed}", "baseline", b, seed, setup.baseline_params(ds, b),
                                  section, labels={"method": b, "tuned": setup.has_tuned(ds, b)}))
            for backend in backends:
                cells += _backend_cells(setup, ds, backend, seed, section, ds, methods,
                                        beside_baseline=backend in baselines)
    results = _execute(setup, cells, out)
    rows = []
    for ds in datasets:
        groups: dict[str, list[Cell]] = {}
        for c in cells:
            if c.key.startswith(f"{ds}/") and not c.labels.get("hidden"):
                groups.setdefault(c.key.rsplit("/", 1)[0], []).append(c)
        ds_rows: list[tuple[dict[str, Any], list[Cell]]] = []
        for members in groups.values():
            keys = [c.key for c in members]
            labels = members[0].labels  # backend cells name their backend and method; baselines their name only
            base, method = labels.get("backend", labels["method"]), labels["method"] if "backend" in labels else ""
            row = {"dataset": ds, "model": LABEL.get(base, base) + labels.get("suffix", SUFFIX.get(method, "")),
                   "config": "tuned" if labels.get("tuned") else "hand-set", **summarize(results, keys)}
            if row["n_seeds"] < len(members):  # some seeds failed or were not run: the row shows the others'
                row["missing_seeds"] = [c.seed for c in members if not _finished(results, [c.key])]
            # against its backend's cells, seed by seed, over the seeds both finished
            pairs = [(c, c.labels["plain"]) for c in members
                     if "plain" in c.labels and _finished(results, [c.key, c.labels["plain"]])]
            if pairs:
                this, ref, diff, p, over = _paired(results, out / "cells", pairs, len(members))
                row["vs_backend_recall@20"] = relative(this, ref, "recall@20")
                row["vs_backend_ndcg@20"] = relative(this, ref, "ndcg@20")
                row["paired_diff_recall@20"], row["p_value_recall@20"] = diff, p
                if over:
                    row["vs_backend_seeds"] = over
            ds_rows.append((row, members))
        _versus_best_baseline(ds_rows, out / "cells", results)
        rows += [r for r, _ in ds_rows]
    columns = ["dataset", "model", "config", "n_seeds", *[x for m in METRICS for x in (m, f"{m}_std")],
               "valid_recall@20",
               "vs_backend_recall@20", "vs_backend_ndcg@20", "paired_diff_recall@20", "p_value_recall@20",
               "best_baseline", "vs_best_baseline_recall@20", "p_best_baseline_recall@20", "missing_seeds", "vs_backend_seeds",
               "vs_best_baseline_seeds", "error"]
    write_csv(out / "table.csv", rows, columns)
    md_rows = [{"dataset": r["dataset"], "model": r["model"], "config": r["config"],
                "valid": "–" if math.isnan(r["valid_recall@20"]) else f"{r['valid_recall@20']:.4f}",
                **{m: fmt(r[m], r[f"{m}_std"], r["n_seeds"]) for m in METRICS},
                "gain": (fmt_gain(r["vs_backend_recall@20"], r["vs_backend_ndcg@20"])
                         if "vs_backend_recall@20" in r else ""),
                "p": _note(r),
                "best": (f"{100 * r['vs_best_baseline_recall@20']:+.1f} % vs {r['best_baseline']}, "
                         f"p {fmt_p(r['p_best_baseline_recall@20'])}{_over(r.get('vs_best_baseline_seeds'))}"
                         if "best_baseline" in r else "")}
               for r in rows]
    versus = any("best_baseline" in r for r in rows)
    # a tuned table also shows what selected its rows: the mean validation Recall@20 of the seeds shown
    tuned = ["config", "valid"] if setup.tuned else []
    shown = ["dataset", "model", *tuned, *METRICS, "gain", "p", *(["best"] if versus else [])]
    text = markdown(md_rows, shown, ["dataset", "model", *(["hyper-parameters", "valid R@20"] if setup.tuned else []),
                                     "Recall@10", "Recall@20", "NDCG@10", "NDCG@20",
                                     "vs backend (R@20 / N@20)", "paired t-test p (R@20) / note",
                                     *(["R@20 vs the best baseline on validation, paired p"] if versus else [])])
    write_text(out / "table.md", text + "\n")
    return {"experiment": "table", "rows": rows, "markdown": text, "output": str(out),
            **_provenance(cells, seeds, results)}


def _finished(results: dict[str, dict[str, Any]], keys: list[str]) -> bool:
    """Every cell of ``keys`` ran without error."""
    return all(k in results and "error" not in results[k] for k in keys)


def _paired(results: dict[str, dict[str, Any]], root: Path, pairs: list[tuple[Cell, str]], n_row: int
            ) -> tuple[dict[str, Any], dict[str, Any], float, float, list[int] | None]:
    """A row against a reference over the seeds both finished (``pairs``: the row's cell, the reference's cell key of
    the same seed): both sides' summaries, the paired test's mean difference and p-value, and those seeds when they
    are fewer than the row's ``n_row`` (None when it is all of them)."""
    mine, theirs = [c.key for c, _ in pairs], [k for _, k in pairs]
    diff, p = paired_test(root, mine, theirs)
    seeds = [c.seed for c, _ in pairs] if len(pairs) < n_row else None
    return summarize(results, mine), summarize(results, theirs), diff, p, seeds


def _seeds(seeds: list[int]) -> str:
    return ", ".join(str(k) for k in seeds)


def _over(seeds: list[int] | None) -> str:
    """`` (seeds 0, 2)``: the seeds a comparison is over when it is not over all of the row's."""
    return f" (seed{'s' if len(seeds) > 1 else ''} {_seeds(seeds)})" if seeds else ""


def _note(row: dict[str, Any]) -> str:
    """A row's last-but-one column: its paired p against its backend, and which seeds it lacks and why."""
    parts = []
    if "p_value_recall@20" in row:
        parts.append(fmt_p(row["p_value_recall@20"]) + _over(row.get("vs_backend_seeds")))
    if "error" in row:
        missing = row.get("missing_seeds", [])
        why = row["error"] if row["error"] == NOT_RUN else f"skipped: {row['error']}"
        parts.append(why if row["n_seeds"] == 0 else
                     f"seed{'s' if len(missing) > 1 else ''} {_seeds(missing)} {why}")
    return "; ".join(parts)


def _versus_best_baseline(ds_rows: list[tuple[dict[str, Any], list[Cell]]], root: Path,
                          results: dict[str, dict[str, Any]]) -> None:
    """Compare every trained-model row of one dataset with the baseline that validates highest (chosen on
    validation, never on test): relative Recall@20 and the paired t-test across test users, over the seeds both
    finished."""
    baselines = [(r, m) for r, m in ds_rows
                 if "backend" not in m[0].labels and r["n_seeds"] > 0 and not math.isnan(r["valid_recall@20"])]
    if not baselines:
        return
    best, best_cells = max(baselines, key=lambda rm: rm[0]["valid_recall@20"])
    by_seed = {c.seed: c.key for c in best_cells if _finished(results, [c.key])}
    for row, members in ds_rows:
        if "backend" not in members[0].labels:
            continue
        pairs = [(c, by_seed[c.seed]) for c in members if c.seed in by_seed and _finished(results, [c.key])]
        if not pairs:
            continue
        this, ref, _, p, over = _paired(results, root, pairs, len(members))
        row["best_baseline"] = best["model"]
        row["vs_best_baseline_recall@20"] = relative(this, ref, "recall@20")
        row["p_best_baseline_recall@20"] = p
        if over:
            row["vs_best_baseline_seeds"] = over


# ---------------------------------------------------------------------------------------------------- noise
def noise(dataset: str, backend: str, ratios: list[float], seeds: int, out: Path, setup: Setup,
          methods: tuple[str, ...] = ("backend", "tce", "rce", "ddrm")) -> dict[str, Any]:
    """Random noise injected into train at each ratio; every method on the same noisy data; CSV + PNG."""
    cells: list[Cell] = []
    for r in ratios:
        section = setup.data_section(dataset, r)
        for seed in range(seeds):
            for c in _backend_cells(setup, dataset, backend, seed, section, f"{dataset}/noise{r:g}", methods):
                c.labels["ratio"] = r
                cells.append(c)
    results = _execute(setup, cells, out)
    rows, series = [], {}
    for m in methods:
        name = LABEL.get(backend, backend) + SUFFIX.get(m, "")
        s: dict[str, list[float]] = {}
        for r in ratios:
            keys = [c.key for c in cells if c.labels.get("ratio") == r and c.labels["method"] == m]
            summ = summarize(results, keys)
            rows.append({"ratio": r, "method": name, **summ})
            for metric in ("recall@20", "ndcg@20"):
                s.setdefault(metric, []).append(summ[metric])
                s.setdefault(f"{metric}_std", []).append(summ[f"{metric}_std"])
        series[name] = s
    columns = ["ratio", "method", "n_seeds", *[x for m in METRICS for x in (m, f"{m}_std")]]
    write_csv(out / "noise.csv", rows, columns)
    text = _noise_markdown(rows, ratios, list(series), backend)
    write_text(out / "noise.md", text + "\n")
    line_plot(out / "noise.png", ratios, series, "ratio of random noise injected into train",
              f"{dataset}: robustness to injected noise ({backend}, {seeds} seed(s))")
    return {"experiment": "noise", "rows": rows, "markdown": text, "output": str(out), "plot": str(out / "noise.png"),
            **_provenance(cells, seeds, results)}


def _noise_markdown(rows: list[dict[str, Any]], ratios: list[float], names: list[str], backend: str) -> str:
    """One line per ratio: Recall@20 and NDCG@20 of every method, and DDRM's gain over its backend."""
    at = {(r["ratio"], r["method"]): r for r in rows}
    plain, ddrm = LABEL.get(backend, backend), LABEL.get(backend, backend) + " + DDRM"
    gain = plain in names and ddrm in names
    md_rows = []
    for x in ratios:
        line: dict[str, str] = {"ratio": f"{x:g}"}
        for n in names:
            r = at[(x, n)]
            line[f"{n} R"] = fmt(r["recall@20"], r["recall@20_std"], r["n_seeds"])
            line[f"{n} N"] = fmt(r["ndcg@20"], r["ndcg@20_std"], r["n_seeds"])
        if gain:
            a, b = at[(x, plain)], at[(x, ddrm)]
            line["gain"] = fmt_gain(relative(b, a, "recall@20"), relative(b, a, "ndcg@20"))
        md_rows.append(line)
    columns = ["ratio", *[f"{n} {m}" for n in names for m in ("R", "N")], *(["gain"] if gain else [])]
    headers = ["injected noise ratio", *[f"{n} {m}@20" for n in names for m in ("R", "N")],
               *(["DDRM gain R@20 / N@20"] if gain else [])]
    return markdown(md_rows, columns, headers)


# ---------------------------------------------------------------------------------------------------- ablation
ABLATIONS: dict[str, dict[str, Any]] = {
    "full": {},
    "no reconstruction": {"reconstruction": False},
    "no reweighting": {"beta": 0.0},
    "no user denoiser": {"user_denoiser": False},
    "no item denoiser": {"item_denoiser": False},
    "pure-noise start": {"start": "noise"},
}


def ablation(dataset: str, backend: str, seeds: int, steps: list[int], out: Path, setup: Setup,
             variants_run: list[str] | None = None) -> dict[str, Any]:
    """DDRM full vs each switch off (``variants_run``: a subset of ABLATIONS), and a sweep over T (sampling steps =
    T), on one backend per seed."""
    section = setup.data_section(dataset)
    unknown = sorted(set(variants_run or ()) - set(ABLATIONS))
    if unknown:
        raise ConfigError(f"unknown ablation variant {unknown[0]!r}; choose from {', '.join(ABLATIONS)}.")
    variants = {k: v for k, v in ABLATIONS.items() if variants_run is None or k in variants_run}
    for t in steps:
        variants[f"T={t}"] = {"steps": t, "sampling_steps": None}
    cells: list[Cell] = []
    for seed in range(seeds):
        base = _backend_cells(setup, dataset, backend, seed, section, f"{dataset}/ablation", ("backend",))[0]
        cells.append(base)
        ddrm_cfg = setup.ddrm_config(dataset, backend, section)
        for name, over in variants.items():
            key = name.replace(" ", "-").replace("=", "")
            cells.append(Cell(f"{dataset}/ablation/ddrm-{key}/seed{seed}", "train", backend, seed,
                              deep_merge(ddrm_cfg, {"ddrm": over}), section, needs=base.key,
                              labels={"variant": name}))
    results = _execute(setup, cells, out)
    rows = []
    for name in variants:
        keys = [c.key for c in cells if c.labels.get("variant") == name]
        rows.append({"variant": name, **summarize(results, keys)})
    backend_keys = [c.key for c in cells if c.kind == "pretrain"]
    rows.append({"variant": f"{backend} alone", **summarize(results, backend_keys)})
    columns = ["variant", "n_seeds", *[x for m in METRICS for x in (m, f"{m}_std")], "valid_recall@20"]
    write_csv(out / "ablation.csv", rows, columns)
    md = markdown([{"variant": r["variant"], **{m: fmt(r[m], r[f"{m}_std"], r["n_seeds"]) for m in METRICS},
                    "valid": "–" if math.isnan(r["valid_recall@20"]) else f"{r['valid_recall@20']:.4f}"} for r in rows],
                  ["variant", *METRICS, "valid"],
                  ["variant", "Recall@10", "Recall@20", "NDCG@10", "NDCG@20", "valid Recall@20"])
    write_text(out / "ablation.md", md + "\n")
    names = [r["variant"] for r in rows]
    bar_plot(out / "ablation.png", names, {m: [r[m] for r in rows] for m in ("recall@20", "ndcg@20")},
             {m: [r[f"{m}_std"] for r in rows] for m in ("recall@20", "ndcg@20")},
             f"{dataset}: DDRM ablation on {backend} ({seeds} seed(s))")
    return {"experiment": "ablation", "rows": rows, "markdown": md, "output": str(out),
            "plot": str(out / "ablation.png"), **_provenance(cells, seeds, results)}
