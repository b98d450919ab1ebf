"""Write an experiment's outcome into a Markdown results file (``--results docs/RESULTS.md``).

Each experiment owns one block of the file, delimited by ``<!-- ddrm:begin ID -->`` and ``<!-- ddrm:end ID -->``
(ID = the experiment folder's name). Re-running the command replaces that block only: headings, commentary and
other experiments' blocks outside it are kept. A block holds the exact command, the seeds, the machine, the cells'
compute time, the Markdown table and, for the noise sweep and the ablation, the plot (copied next to the file as
``results-ID.png``). The file is written atomically.
"""

from __future__ import annotations

import datetime as _dt
import re
import shutil
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_path
from ..machine import machine_info
from .report import write_text

_ID = re.compile(r"^[A-Za-z0-9._-]+$")


def markers(block_id: str) -> tuple[str, str]:
    """The begin and end marker lines of block ``block_id``."""
    return f"<!-- ddrm:begin {block_id} -->", f"<!-- ddrm:end {block_id} -->"


def splice(text: str, block_id: str, body: str, title: str, where: str = "the results file") -> str:
    """``text`` with block ``block_id`` replaced by ``body`` (or appended under ``## title`` when absent)."""
    if not _ID.match(block_id):
        raise ConfigError(f"results block id {block_id!r} may only use letters, digits, '.', '_' and '-'.")
    begin, end = markers(block_id)
    i, j = text.find(begin), text.find(end)
    if i < 0 and j < 0:
        head = text.rstrip("\n")
        return (head + "\n\n" if head else "") + f"## {title}\n\n{begin}\n{body.strip()}\n{end}\n"
    if i < 0 or j < i or text.count(begin) > 1 or text.count(end) > 1:
        raise ConfigError(f"{where}: the markers of block {block_id!r} are missing, repeated or out of order; "
                          f"fix them by hand ({begin} ... {end}).")
    return text[:i] + f"{begin}\n{body.strip()}\n" + text[j:]


def machine_line() -> str:
    """One line naming the CPU (or GPU), the memory and the torch build."""
    m = machine_info()
    parts = [f"{m['cpu']}, {m['logical_cpus']} logical CPUs"]
    if m["ram_gb"] is not None:
        parts.append(f"{m['ram_gb']} GB RAM")
    return ", ".join([*parts, f"torch {m['torch']}", m["cuda"] or "no GPU"])


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def _where(payload: dict[str, Any]) -> str:
    """The machine sentence of a block: this one's, or for a block assembled from finished cells (which may have
    run on several machines), where the cells ran as far as they recorded it."""
    if not payload.get("finished_only"):
        return f"Machine: {machine_line()}."
    ran = "; ".join(f"{m} ({n})" for m, n in sorted(payload.get("machines", {}).items()))
    return f"Assembled from finished cells, none run here; the cells ran on: {ran or 'none yet'}."


def block_body(payload: dict[str, Any], command: str, plot_name: str | None) -> str:
    """The Markdown of one block: command, provenance line, table, plot link."""
    spent = payload.get("cell_seconds", {})
    by_model: dict[str, float] = {}
    for key, s in spent.items():
        model = key.split("/")[-2]
        by_model[model] = by_model.get(model, 0.0) + s
    detail = ", ".join(f"{m} {_minutes(s)}" for m, s in by_model.items())
    cpu = payload.get("cell_cpu_seconds", {})
    if cpu:  # wall clock mixes the shares of a busy machine; the CPU time is the work
        wall = sum(spent.get(k, 0.0) for k in cpu)
        detail += (f"; wall clock: the {len(cpu)} cells that recorded their CPU time used {_minutes(sum(cpu.values()))}"
                   f" of CPU in {_minutes(wall)}")
    lines = ["```bash", command, "```", "",
             f"Seeds 0..{payload['seeds'] - 1}; {payload['cells']} cells"
             + (f", {payload['not_run']} of them not run yet (each row shows the seeds it has; its note names the "
                f"missing ones)" if payload.get("not_run") else "")
             + f", {_minutes(sum(spent.values()))} of compute when they ran ({detail}). {_where(payload)} Block "
             f"written {_dt.date.today().isoformat()} by `ddrm experiment`; test split, full ranking, selection on "
             f"validation.", "", payload["markdown"]]
    if plot_name:
        lines += ["", f"![{payload['experiment']} plot]({plot_name})"]
    return "\n".join(lines)


def update_results(path: Path, block_id: str, title: str, payload: dict[str, Any], command: str) -> Path:
    """Write ``payload``'s block into ``path`` (created if absent); copy its plot beside it. Returns ``path``."""
    path = Path(path)
    if path.exists() and not path.is_file():
        raise ConfigError(f"--results {path}: not a file.")
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Results\n"
    plot_name = None
    if payload.get("plot"):
        plot_name = f"results-{block_id}.png"
        with atomic_path(path.parent / plot_name) as tmp:
            shutil.copyfile(payload["plot"], tmp)
    new = splice(text, block_id, block_body(payload, command, plot_name), title, where=str(path))
    write_text(path, new)
    return path
