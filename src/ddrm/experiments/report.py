"""Aggregation over seeds (mean, std), paired tests across users, and CSV / Markdown / PNG outputs."""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..io import atomic_open, atomic_path
from .cells import load_per_user

METRICS = ("recall@10", "recall@20", "ndcg@10", "ndcg@20")


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    a = np.asarray(values, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def paired_test(root: Path, a_keys: Sequence[str], b_keys: Sequence[str], metric: str = "recall@20"
                ) -> tuple[float, float]:
    """Paired t-test across test users of ``a`` vs ``b`` (per-user metric averaged over the seeds' cells).

    Returns (mean per-user difference a - b, two-sided p-value); NaN p-value when every difference is zero.
    """
    from scipy import stats

    def per_user(keys: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        runs = [load_per_user(root / k) for k in keys]
        users = runs[0]["users"]
        if any(not np.array_equal(r["users"], users) for r in runs):
            raise ValueError("cells evaluated different test users")
        return users, np.mean([r[metric] for r in runs], axis=0)

    ua, va = per_user(a_keys)
    ub, vb = per_user(b_keys)
    if not np.array_equal(ua, ub):
        raise ValueError("paired cells evaluated different test users")
    diff = va - vb
    if np.allclose(diff, 0):
        return 0.0, math.nan
    return float(diff.mean()), float(stats.ttest_rel(va, vb).pvalue)


def summarize(results: dict[str, dict[str, Any]], keys: Sequence[str], split: str = "test") -> dict[str, Any]:
    """Mean / std of each metric over the cells ``keys`` (one per seed); failed cells are left out and their
    reason kept under ``error`` (NaN metrics when none succeeded)."""
    errors = [results[k]["error"] for k in keys if "error" in results[k]]
    keys = [k for k in keys if "error" not in results[k]]
    out: dict[str, Any] = {"n_seeds": len(keys)}
    if errors:
        out["error"] = errors[0]
    if not keys:
        return {**out, **{m: math.nan for m in METRICS}, **{f"{m}_std": math.nan for m in METRICS},
                "valid_recall@20": math.nan}
    for m in METRICS:
        mu, sd = mean_std([results[k]["metrics"][split][m] for k in keys])
        out[m], out[f"{m}_std"] = mu, sd
    out["valid_recall@20"] = mean_std([results[k]["metrics"]["valid"]["recall@20"] for k in keys])[0]
    return out


def fmt(mu: float, sd: float, n: int) -> str:
    if n == 0 or math.isnan(mu):
        return "–"
    return f"{mu:.4f} ± {sd:.4f}" if n > 1 else f"{mu:.4f}"


def relative(new: dict[str, Any], old: dict[str, Any], metric: str) -> float:
    """``new[metric] / old[metric] - 1`` (0 when ``old`` scored 0): the relative gain of one row over another."""
    return new[metric] / old[metric] - 1 if old[metric] else 0.0


def fmt_gain(recall: float, ndcg: float) -> str:
    """Relative gains on Recall@20 and NDCG@20 as ``+3.1 % / +2.8 %`` (``–`` where a side has no finished cell)."""
    if math.isnan(recall) or math.isnan(ndcg):
        return "–"
    return f"{100 * recall:+.1f} % / {100 * ndcg:+.1f} %"


def fmt_p(p: float) -> str:
    """A p-value for a table: 3 significant digits; one that underflowed to 0 in double precision as '< 1e-300'."""
    if math.isnan(p):
        return "–"
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def write_csv(path: Path, rows: list[dict[str, Any]], columns: Sequence[str]) -> None:
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(columns), extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({c: (f"{v:.6g}" if isinstance(v, float) else " ".join(map(str, v)) if isinstance(v, list)
                            else v) for c, v in r.items() if c in columns})


def markdown(rows: list[dict[str, Any]], columns: Sequence[str], headers: Sequence[str] | None = None) -> str:
    head = list(headers or columns)
    if len(head) != len(columns):
        raise ValueError(f"markdown: {len(head)} headers for {len(columns)} columns")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def write_text(path: Path, text: str) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def line_plot(path: Path, x: Sequence[float], series: dict[str, dict[str, list[float]]], xlabel: str,
              title: str) -> None:
    """Two panels (Recall@20, NDCG@20) of one line per method against ``x``; error bars = std over seeds."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("recall@20", "ndcg@20"), strict=True):
        for name, s in series.items():
            ax.errorbar(x, s[metric], yerr=s.get(f"{metric}_std"), marker="o", capsize=3, label=name)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(metric.replace("recall", "Recall").replace("ndcg", "NDCG"))
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    _save(plt, fig, path)


def bar_plot(path: Path, names: Sequence[str], values: dict[str, list[float]], errors: dict[str, list[float]],
             title: str) -> None:
    """Grouped bars (Recall@20, NDCG@20) per variant."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(names)), 4))
    x = np.arange(len(names))
    for k, metric in enumerate(values):
        ax.bar(x + (k - 0.5) * 0.38, values[metric], 0.38, yerr=errors[metric], capsize=3,
               label=metric.replace("recall", "Recall").replace("ndcg", "NDCG"))
    ax.set_xticks(x, names, rotation=20, ha="right")
    ax.set_ylabel("test metric")
    ax.set_xlabel("variant")
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    ax.set_title(title)
    _save(plt, fig, path)


def _pyplot():
    """matplotlib's pyplot on the non-interactive Agg backend (the ``plots`` extra)."""
    try:
        import matplotlib
    except ImportError:
        from ..errors import ConfigError

        raise ConfigError("plots need matplotlib: pip install 'ddrm[plots]'.") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)
