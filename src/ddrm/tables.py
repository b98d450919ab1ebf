"""Plain-text tables for the terminal."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def format_table(rows: Sequence[Mapping[str, object]], columns: Sequence[str], title: str = "") -> str:
    """Fixed-width table; floats with 4 decimals."""

    def cell(v: object) -> str:
        return f"{v:.4f}" if isinstance(v, float) else str(v)

    body = [[cell(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[k]) for b in body)) if body else len(c) for k, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))
    out = [title] if title else []
    out += [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if k else v.ljust(w) for k, (v, w) in enumerate(zip(b, widths, strict=True)))
            for b in body]
    return "\n".join(out)


def metric_rows(metrics: Mapping[str, Mapping[str, float]], ks: Sequence[int]) -> list[dict[str, object]]:
    """One row per split with recall / ndcg / precision / mrr / hit at each K."""
    rows = []
    for split, values in metrics.items():
        for k in ks:
            rows.append({"split": split, "K": k, **{m: values[f"{m}@{k}"] for m in ("recall", "ndcg", "precision",
                                                                                     "mrr", "hit")}})
    return rows
