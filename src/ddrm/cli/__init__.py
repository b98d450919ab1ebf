"""Command-line interface: a thin argparse layer over the Python API. ``main(argv) -> int``.

``parser`` builds the argument parser, ``commands`` holds one function per command; ``main`` parses, sets up
logging and progress bars, runs the command and turns errors into one sentence and an exit code."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from ..errors import DDRMError
from ..interrupt import TrainingInterrupted
from .commands import HANDLERS
from .parser import UsageError, build_parser, shared_options

__all__ = ["UsageError", "build_parser", "entry_point", "main", "shared_options"]


def _setup_logging(quiet: bool) -> None:
    """Log records on stderr: INFO and up, WARNING and up with ``--quiet`` (a run folder's ``run.log`` takes INFO
    whatever this shows: ``runs.run_log``)."""
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)


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
        from .. import distributed

        if distributed.launched():
            if key not in ("pretrain", "train", "evaluate"):
                raise UsageError(f"'ddrm {key}' does not run under torchrun; use pretrain, train or evaluate.")
            distributed.init_from_env()
            if not distributed.is_main():
                args.quiet = True
        _setup_logging(getattr(args, "quiet", False))
        from ..machine import keep_freed_memory

        keep_freed_memory()  # reuse freed activation buffers: fewer page faults per training step
        if getattr(args, "quiet", False):
            import os

            os.environ.setdefault("TQDM_DISABLE", "1")
        elif getattr(args, "progress", False):
            import os

            from ..progress import FORCE_ENV

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
        from .. import distributed

        distributed.shutdown()


def entry_point() -> None:
    sys.exit(main())
