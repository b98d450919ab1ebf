"""The equal-budget tuning grid as one resumable run: every study of a grid file, several workers each, a deadline.

    python benchmarks/tune_grid.py [--grid configs/grids/tuned.yaml] [--runs runs/tune] [--only lightgcn]
        [--device cuda] [--workers 4] [--parallel 8] [--threads 1] [--minutes 8] [--status | --install configs]

Each study of the grid is ``ddrm tune --model M [--config C] [--data D] [--set K=V ...] --trials N --output
RUNS/<dataset>/<name>``: the same command a user types, so its SQLite study resumes across runs, machines and
sessions. ``--workers`` processes share each study (``--worker K --no-final``); up to ``--parallel`` processes run
at once, each with ``cores / parallel`` torch threads (``--threads``; never more than an ``OMP_NUM_THREADS`` the grid
is started with), the studies with the fewest trials left first. When a study's
workers have stopped and its budget is full, one more ``ddrm tune`` (no trial left to run) refits the best trial,
evaluates it on test once and writes ``best.yaml``; a refit starts before new workers (its best.yaml may be the
backbone a DDRM study waits for). At ``--minutes``, or when the grid itself gets SIGTERM or SIGINT (it then exits
143 or 130 after its JSON), every worker is sent SIGTERM (a trained model's trial or refit
keeps its training state and stops; the next run continues it) and, ``--grace`` minutes later, SIGKILL (a
closed-form trial or an evaluation still running): a killed trial is failed by the next run's heartbeat check
(``--stale-after``) and its parameters run again. ``--status`` only reports; ``--install configs`` copies each
finished study's best.yaml to ``configs/<dataset>/tuned/<name>.yaml`` (paths made relative to the repository). Prints one JSON
object: per study its finished trials, best validation value, whether ``best.yaml`` is written and whether its tuned
config is installed.

The runs folder is not part of the repository, and a machine may not be kept: every minute (and at the end) each
study's finished trials are written to ``--records`` (``benchmarks/studies/<dataset>/<name>.jsonl``, plain JSON
lines, see ddrm.tuning.records), which is committed. On a fresh clone, a study folder without study.db is loaded
from its records first, so the grid goes on where any machine left it; only the trials running when a machine went
away are lost. A DDRM study whose backbone study has no best.yaml here trains the backbone's installed tuned config
(``configs/<dataset>/tuned/<name>.yaml``), a full study with an installed config is not refitted again, and a study
with an installed config but neither study.db nor records here (tuned before the records existed) is skipped.

Made for a lent GPU session (one short, prepared run whose study folders come back) and for the 2-core machine
(two workers of one thread each: about 25 % more throughput than one process of two threads, measured on
LightGCN). Trials from different machines join one study; their scores are comparable only up to the small
numerical differences between devices, which the final refit on one machine reports.

To run a grid only on the CPU time other jobs leave: ``nice -n 19`` alone does not do it when each job runs in
its own session (``setsid``, a terminal of its own), since Linux's autogroup scheduler shares the CPU between
sessions first; also lower the session's weight, ``echo 19 > /proc/<grid pid>/autogroup`` (measured here: a
niced worker beside two others got 93 % of a core, then 6 % once its autogroup was set).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def tuned_path(configs: Path | None, study: str) -> Path:
    """The installed tuned config of a grid study ``DATASET/NAME``: CONFIGS/<dataset>/tuned/<name>.yaml (CONFIGS
    defaults to the repository's configs/)."""
    dataset, name = study.split("/", 1)
    return (configs or REPO / "configs") / dataset / "tuned" / f"{name}.yaml"


@dataclass
class Study:
    """One study of the grid: the ``ddrm tune`` arguments and where its folder lives."""

    dataset: str
    model: str
    name: str
    config: str | None = None
    sets: list[str] = field(default_factory=list)
    backbone: str | None = None  # DDRM: the grid study (dataset/name) whose best.yaml is the backend to train on
    configs: Path | None = None  # the folder --install writes to (default: the repository's configs/)

    def args(self, trials: int, runs: Path) -> list[str]:
        out = ["--model", self.model, "--trials", str(trials), "--output", str(self.folder(runs)), "--quiet", "--json",
               "--data", self.dataset]  # always named: a config of model settings alone would run on synthetic data
        out += ["--config", self.config] if self.config else []
        out += ["--backbone", str(self.backbone_file(runs))] if self.backbone else []
        for s in self.sets:
            out += ["--set", s]
        return out

    @property
    def id(self) -> str:
        """``DATASET/NAME``, how the grid, ``--only`` and a DDRM study's ``backbone`` name this study."""
        return f"{self.dataset}/{self.name}"

    def folder(self, runs: Path) -> Path:
        return runs / self.dataset / self.name

    def backbone_file(self, runs: Path) -> Path | None:
        """The backbone study's best.yaml; where this clone has none (a fresh machine), its installed tuned config."""
        if self.backbone is None:
            return None
        best = runs / self.backbone / "best.yaml"
        installed = tuned_path(self.configs, self.backbone)
        return installed if not best.is_file() and installed.is_file() else best

    def installed(self) -> Path:
        """Where ``--install`` puts this study's best.yaml: CONFIGS/<dataset>/tuned/<name>.yaml."""
        return tuned_path(self.configs, self.id)

    def record_file(self, records: Path | None) -> Path | None:
        """The study's trial records in the repository (ddrm.tuning.records), or None without --records."""
        return records / self.dataset / f"{self.name}.jsonl" if records is not None else None

    def ready(self, runs: Path) -> bool:
        """Whether the study can start: it has no backbone, or its backbone's study has written best.yaml."""
        return self.backbone is None or self.backbone_file(runs).is_file()


def load_grid(path: Path) -> tuple[int, list[Study]]:
    """``{trials: N, studies: [{dataset, model, name?, config?, set?: [K=V], backbone?: DATASET/NAME}]}``; a bad entry
    is one sentence. ``backbone`` names another study of the grid: this one waits for its best.yaml."""
    raw = yaml.safe_load(path.read_text()) or {}
    studies = []
    for k, s in enumerate(raw.get("studies") or []):
        if not isinstance(s, dict) or not {"dataset", "model"} <= set(s) or set(s) - {"dataset", "model", "name",
                                                                                       "config", "set", "backbone"}:
            sys.exit(f"{path}: studies[{k}] must have dataset and model (and optionally name, config, set, backbone).")
        studies.append(Study(s["dataset"], s["model"], s.get("name", s["model"]), s.get("config"),
                             [str(x) for x in s.get("set") or []], s.get("backbone")))
    names = {s.id for s in studies}
    for s in studies:
        if s.backbone is not None and s.backbone not in names:
            sys.exit(f"{path}: study {s.id} has backbone {s.backbone!r}, which is not a study of the grid.")
    return int(raw.get("trials", 20)), studies


def _sqlite(db: Path):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.storages.RDBStorage(f"sqlite:///{db}", engine_kwargs={"connect_args": {"timeout": 60}})


def restore(study: Study, runs: Path, records: Path | None) -> int:
    """A study folder without study.db (a fresh clone or machine) gets the study's trials from its records file,
    loaded into a temporary file renamed to study.db when whole. Returns the number of trials loaded."""
    rec, db = study.record_file(records), study.folder(runs) / "study.db"
    if rec is None or not rec.is_file() or db.exists():
        return 0
    from ddrm.io import atomic_path
    from ddrm.tuning.records import import_studies

    with atomic_path(db) as tmp:
        storage = _sqlite(tmp)
        n = sum(import_studies(rec, storage).values())
        storage.engine.dispose()
    return n


def save(study: Study, runs: Path, records: Path | None) -> None:
    """Write the study's finished trials to its records file (atomically), where it has a study.db, unless the
    file holds more trials than the study.db (a folder older than the records, e.g. an old copy unpacked here):
    then the file is kept and that is said on stderr."""
    rec, db = study.record_file(records), study.folder(runs) / "study.db"
    if rec is None or not db.is_file():
        return
    from ddrm.tuning.records import export_studies, finished_trials, read_records

    storage = _sqlite(db)
    if rec.is_file():
        kept, have = sum(len(r["trials"]) for r in read_records(rec).values()), finished_trials(storage)
        if have < kept:
            print(f"{study.id}: {rec} keeps {kept} trials, {db} has {have}; not overwritten",
                  file=sys.stderr)
            return
    export_studies(storage, rec)


def progress(study: Study, runs: Path, records: Path | None = None) -> dict:
    """Finished (complete + pruned) trials, the best validation value, whether best.yaml exists and whether the
    study's tuned config is installed; a study with no study.db here is read from its records file, if any."""
    folder = study.folder(runs)
    row = {"study": study.id, "finished": 0, "running": 0, "best_valid": None,
           "best_yaml": (folder / "best.yaml").is_file(), "installed": study.installed().is_file()}
    if not study.ready(runs):
        row["waiting_for"] = study.backbone
    db, rec = folder / "study.db", study.record_file(records)
    import optuna

    if db.is_file():
        storage = _sqlite(db)
    elif rec is not None and rec.is_file():
        from ddrm.tuning.records import import_studies

        storage = optuna.storages.InMemoryStorage()
        import_studies(rec, storage)
    else:
        return row
    for summary in optuna.get_all_study_summaries(storage):
        trials = optuna.load_study(study_name=summary.study_name, storage=storage).get_trials(deepcopy=False)
        row["finished"] += sum(t.state.name in ("COMPLETE", "PRUNED") for t in trials)
        row["running"] += sum(t.state.name == "RUNNING" for t in trials)
        values = [t.value for t in trials if t.state.name == "COMPLETE" and t.value is not None]
        if values:
            row["best_valid"] = max(values + ([row["best_valid"]] if row["best_valid"] is not None else []))
    return row


def select(studies: list[Study], only: list[str]) -> list[Study]:
    """The studies ``--only`` names: a token equal to a study's DATASET/NAME picks that study alone (so
    ``ml-1m_noisy/sgl`` is not also ``ml-1m_noisy/sgl-tce``), any other token every study whose id contains it."""
    ids = [s.id for s in studies]
    picked: set[str] = set()
    for token in only:
        match = [i for i in ids if i == token] or [i for i in ids if token in i]
        if not match:
            sys.exit(f"--only {token}: no study of the grid is named so or contains it.")
        picked.update(match)
    return [s for s, i in zip(studies, ids, strict=True) if i in picked]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--grid", default=str(REPO / "configs" / "grids" / "tuned.yaml"))
    p.add_argument("--runs", default=str(REPO / "runs" / "tune"), help="folder of the study folders")
    p.add_argument("--only", nargs="+", default=None,
                   help="studies to run: a full DATASET/NAME selects that study alone, any other word every study "
                        "whose DATASET/NAME contains it (lightgcn: lightgcn, its T-CE/R-CE and DDRM studies)")
    p.add_argument("--device", default=None, help="passed to every trained model's trials (cpu, cuda)")
    p.add_argument("--workers", type=int, default=1, help="processes per study")
    p.add_argument("--parallel", type=int, default=2, help="processes at once")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per worker (default: cores / parallel, at most $OMP_NUM_THREADS when set)")
    p.add_argument("--minutes", type=float, default=None, help="SIGTERM every worker after this long")
    p.add_argument("--grace", type=float, default=1.0, help="minutes between SIGTERM and SIGKILL")
    p.add_argument("--stale-after", type=int, default=120, help="passed to ddrm tune (seconds)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--status", action="store_true", help="report the studies' progress, run nothing")
    p.add_argument("--install", default=None, metavar="CONFIGS",
                   help="copy each finished study's best.yaml to CONFIGS/<dataset>/tuned/<name>.yaml, run nothing")
    p.add_argument("--configs", default=str(REPO / "configs"),
                   help="the installed tuned configs (CONFIGS/<dataset>/tuned/<name>.yaml): a DDRM study's backbone "
                        "where its study has no best.yaml here; a study installed and without trials here is skipped")
    p.add_argument("--records", default=str(REPO / "benchmarks" / "studies"),
                   help="folder of the studies' trial records (<dataset>/<name>.jsonl), loaded into a study folder "
                        "without study.db and rewritten as trials finish; 'none' for neither")
    args = p.parse_args()
    stopped_by = None
    if args.workers < 1 or args.parallel < 1:
        sys.exit("--workers and --parallel must be >= 1.")
    trials, studies = load_grid(Path(args.grid))
    if args.only:
        studies = select(studies, args.only)
    runs = Path(args.runs).resolve()  # the workers run in the repository
    records = None if args.records == "none" else Path(args.records).resolve()
    for s in studies:
        s.configs = Path(args.configs).resolve()
    t0 = time.monotonic()
    if args.install is not None:
        for s in studies:
            dest = install(s, runs, Path(args.install))
            if dest is not None:
                print(f"{s.id}: wrote {dest}", file=sys.stderr)
    elif not args.status:
        for s in studies:
            n = restore(s, runs, records)
            if n:
                print(f"{s.id}: {n} trials loaded from {s.record_file(records)}", file=sys.stderr)
        try:
            stopped_by = run_grid(studies, trials, runs, args, t0, lambda: [save(s, runs, records) for s in studies])
        finally:
            for s in studies:
                save(s, runs, records)
    rows = [progress(s, runs, records) for s in studies]
    print(json.dumps({"grid": args.grid, "trials": trials, "seconds": round(time.monotonic() - t0, 1),
                      "studies": rows}))
    if stopped_by is not None:
        from ddrm.interrupt import EXIT_CODES

        sys.exit(EXIT_CODES.get(stopped_by, 130))


def install(study: Study, runs: Path, configs: Path) -> Path | None:
    """Copy the study's best.yaml (if written) to ``configs/<dataset>/tuned/<name>.yaml``, atomically: paths under the
    repository made relative to it, the header's "run it with" line naming the new file, and a DDRM config's
    checkpoint of the study's own backend (``<study>/backend.pt``, which stays behind in runs/) dropped, so the
    backend section refits that backbone. An existing file is kept (it may carry edits), and a best.yaml that this
    version's schemas refuse (written by an older ddrm) is not copied; both are said on stderr. Returns the file
    written, or None."""
    src = study.folder(runs) / "best.yaml"
    dest = tuned_path(configs, study.id)
    if not src.is_file() or dest.exists():
        if src.is_file():
            print(f"{study.id}: kept the existing {dest}", file=sys.stderr)
        return None
    text = src.read_text().replace(f"{REPO}/", "")
    shown = dest.resolve().relative_to(REPO) if dest.resolve().is_relative_to(REPO) else dest
    text = text.replace("--config best.yaml", f"--config {shown}")
    own = yaml.safe_load(text).get("backend_checkpoint")
    if own is not None and Path(REPO, own).resolve() == (study.folder(runs) / "backend.pt").resolve():
        lines = text.splitlines(keepends=True)
        text = "".join(line for line in lines if not line.startswith("backend_checkpoint:"))
        text = text.replace(f"--config {shown}\n", f"--config {shown}   (the backbone is refitted from the backend "
                                                     f"section)\n", 1)
    from ddrm.config.loader import from_dict
    from ddrm.errors import DDRMError
    from ddrm.tuning.objective import resolve_model

    spec = resolve_model(study.model)
    try:
        if spec.kind != "baseline":
            from_dict(spec.config_class, yaml.safe_load(text))
    except DDRMError as exc:
        print(f"{study.id}: not copied, {src} does not load here ({exc})", file=sys.stderr)
        return None
    from ddrm.io import atomic_open

    with atomic_open(dest) as fh:
        fh.write(text)
    return dest


def worker_threads(cores: int, parallel: int, threads: int | None = None, omp: str | None = None) -> int:
    """Torch threads per worker: ``threads`` when given; else ``cores // parallel``, never more than an
    ``OMP_NUM_THREADS`` (``omp``) the grid was started with. A worker with more threads than the CPU share it
    gets spins in OpenMP barriers: on the 2-core machine, a yelp LightGCN trial of 2 threads (a grid run with
    ``--parallel 1``) sharing the cores with three other jobs took about 190 s per epoch; the same trial continued
    with 1 thread beside two other jobs, about 26 s."""
    if threads is not None:
        return max(1, threads)
    n = max(1, cores // parallel)
    if omp is not None and omp.strip().isdigit() and int(omp) > 0:
        n = min(n, int(omp))
    return n


def work_queue(studies: list[Study], left: list[int], workers: int) -> list[tuple[Study, int]]:
    """The (study, worker number) processes to start, in order: studies with trials left (``left[k]`` for
    ``studies[k]``), the fewest left first and grid order among equals, so started studies finish, and unblock the
    DDRM studies waiting on them, before new ones take the processes."""
    order = sorted((n, k) for k, n in enumerate(left) if n > 0)
    return [(studies[k], w) for _, k in order for w in range(workers)]


def run_grid(studies: list[Study], trials: int, runs: Path, args: argparse.Namespace, t0: float,
             checkpoint=lambda: None) -> int | None:
    """Workers for every study short of its budget (those with the fewest trials left first), then one final
    ``ddrm tune`` for each study that got new trials or has no best.yaml yet, once its budget is full and none of
    its workers is left. ``checkpoint()`` is called every minute (it writes the trial records). At the deadline, or
    on SIGTERM / SIGINT to this process, every worker is sent SIGTERM and nothing new starts; returns the signal
    that stopped the grid, if any (its workers are never left running on their own)."""
    from ddrm.interrupt import graceful_signals
    from ddrm.tuning.objective import resolve_model
    from ddrm.tuning.study import resolve_space, study_budget

    budget = {s.folder(runs): study_budget(resolve_space(resolve_model(s.model), None), trials) for s in studies}

    def left(s: Study) -> int:
        return budget[s.folder(runs)] - progress(s, runs)["finished"]

    def full(s: Study) -> bool:
        return left(s) <= 0

    threads = worker_threads(os.cpu_count() or 1, args.parallel, args.threads, os.environ.get("OMP_NUM_THREADS"))
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    common = ["--stale-after", str(args.stale_after)] + (["--device", args.device] if args.device else []) + (
        ["--data-root", args.data_root] if args.data_root else [])
    running: list[tuple[subprocess.Popen, Study]] = []

    def launch(s: Study, log_name: str, extra: list[str]) -> None:
        s.folder(runs).mkdir(parents=True, exist_ok=True)
        log = open(s.folder(runs) / log_name, "a")
        cmd = [sys.executable, "-m", "ddrm", "tune", *s.args(trials, runs), *common, *extra]
        running.append((subprocess.Popen(cmd, stdout=log, stderr=log, env=env, cwd=REPO), s))
        print(f"{time.strftime('%H:%M:%S')} {s.id}: started {log_name.removesuffix('.log')} "
              f"(log {s.folder(runs) / log_name})", file=sys.stderr, flush=True)

    done_elsewhere = [s for s in studies if s.installed().is_file() and not (s.folder(runs) / "study.db").is_file()]
    for s in done_elsewhere:  # tuned on a machine that is gone, before the records: its result is the config
        print(f"{s.id}: skipped, its tuned config {s.installed()} is installed and its trials are "
              f"not here", file=sys.stderr)
    studies = [s for s in studies if s not in done_elsewhere]
    todo = work_queue(studies, [left(s) for s in studies], args.workers)
    finals = [s for s in studies if any(t is s for t, _ in todo) or not (s.folder(runs) / "best.yaml").is_file()
              and not s.installed().is_file()]  # a full study installed from another clone is not refitted again
    deadline = t0 + 60 * args.minutes if args.minutes is not None else None
    kill_at, saved = None, time.monotonic()
    with graceful_signals("stopping every worker (SIGTERM now, SIGKILL after --grace minutes)") as stop:
        while todo or running or finals:
            now = time.monotonic()
            if now - saved > 60:
                checkpoint()
                saved = now
            if kill_at is None and (stop.requested or deadline is not None and now > deadline):
                for proc, _ in running:  # every process: stop after its trial's step (a state is kept)
                    proc.send_signal(signal.SIGTERM)
                todo, finals, kill_at = [], [], now + 60 * args.grace
            if kill_at is not None and now > kill_at:
                for proc, _ in running:
                    proc.kill()
            running = [(proc, s) for proc, s in running if proc.poll() is None]
            alive = {s.folder(runs) for _, s in running} | {s.folder(runs) for s, _ in todo} | {
                s.folder(runs) for s in finals}
            orphans = {s.folder(runs): s for s, _ in todo if not s.ready(runs) and runs / s.backbone not in alive}
            for s in orphans.values():
                print(f"{s.id}: skipped, its backbone {s.backbone} has no best.yaml and no run left to write "
                      f"it", file=sys.stderr)
                todo = [(t, w) for t, w in todo if t is not s]
                finals = [t for t in finals if t is not s]
            # refits first: a finished study's best.yaml may be the backbone another study waits for
            busy = {s.folder(runs) for _, s in running} | {s.folder(runs) for s, _ in todo}
            for s in [s for s in finals if s.folder(runs) not in busy]:
                if len(running) >= args.parallel:
                    break
                finals.remove(s)
                if full(s):  # a study whose workers stopped short (an error) keeps its trials and gets no refit
                    launch(s, "final.log", [])
            while len(running) < args.parallel:
                k = next((k for k, (s, _) in enumerate(todo) if s.ready(runs)), None)
                if k is None:  # nothing to start, or only studies that wait for their backbone's best.yaml
                    break
                s, w = todo.pop(k)
                launch(s, f"worker{w}.log", ["--worker", str(w), "--no-final"])
            time.sleep(1.0)
    return stop.signum


if __name__ == "__main__":
    main()
