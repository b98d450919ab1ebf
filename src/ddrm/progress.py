"""Progress bars that appear only where someone watches: on a terminal, never with ``--quiet``.

Written to a file or a CI log, a tqdm bar is thousands of redraws; there the bars are off and the ``logging`` lines
(one per validation, per cell, per trial) tell the progress instead. ``--progress`` (or ``DDRM_PROGRESS=1``) forces
the bars on, e.g. under a terminal multiplexer whose stderr is not a TTY.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm.auto import tqdm

FORCE_ENV = "DDRM_PROGRESS"


def bars_enabled(quiet: bool = False) -> bool:
    """Whether a progress bar should be drawn now."""
    if quiet:
        return False
    if os.environ.get(FORCE_ENV) == "1":
        return True
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(iterable: Any = None, *, quiet: bool = False, **kwargs: Any) -> tqdm:
    """``tqdm(iterable, **kwargs)``, disabled unless :func:`bars_enabled`."""
    return tqdm(iterable, disable=not bars_enabled(quiet), **kwargs)
