"""Graceful SIGINT / SIGTERM during training: the loop finishes its step, saves its state, then stops."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from .errors import DDRMError

logger = logging.getLogger(__name__)

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class TrainingInterrupted(DDRMError):
    """Training stopped on a signal after saving its state; ``exit_code`` is 130 (SIGINT) or 143 (SIGTERM).

    ``run_dir`` is the folder holding the state (what ``--resume`` takes). ``how`` tells how to continue, set by the
    layer that orchestrates the run when that is not ``--resume run_dir`` (an experiment cell, a tuning study).
    """

    def __init__(self, message: str, signum: int, run_dir: str | None = None, how: str | None = None) -> None:
        super().__init__(message)
        self.signum = signum
        self.run_dir = run_dir
        self.how = how
        self.exit_code = EXIT_CODES.get(signum, 130)


@dataclass
class StopFlag:
    """Set by the signal handler; polled by the training loop after every step."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else ""


@contextmanager
def graceful_signals(then: str = "finishing the current step and saving the training state") -> Iterator[StopFlag]:
    """Within the block, SIGINT / SIGTERM set a :class:`StopFlag` instead of killing the process (the warning
    logged says what happens ``then``).

    A second SIGINT while the first is pending raises ``KeyboardInterrupt`` at once (the user insists). Outside the
    main thread (where Python cannot install handlers) the flag is never set and signals behave as usual. The
    previous handlers are restored on exit, and a signal taken inside a nested block (a trial's training inside
    ``ddrm tune``) also sets the enclosing block's flag, so a stop requested in a trial's last epoch still stops the
    study; a nested block entered after the enclosing one took a signal starts with its flag set, so a stop requested
    while a trial was still setting up stops its training at the first step (its state kept) instead of after it.
    """
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        if flag.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        flag.signum = signum
        logger.warning("%s received: %s", signal.Signals(signum).name, then)

    handler.stop_flag = flag  # type: ignore[attr-defined]
    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    taken = next((f for h in previous.values() if (f := getattr(h, "stop_flag", None)) is not None
                  and f.requested), None)
    if taken is not None:  # a stop the enclosing block took before this one began (a trial still setting up)
        flag.signum = taken.signum
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        outer = getattr(previous.get(flag.signum), "stop_flag", None) if flag.requested else None
        if outer is not None and not outer.requested:  # a signal this block took is the enclosing block's too
            outer.signum = flag.signum
