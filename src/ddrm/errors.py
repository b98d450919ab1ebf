"""User-facing errors.

Every mistake a user can make (a bad file, an unknown option, a checkpoint that does not fit the data) raises a
subclass of :class:`DDRMError` carrying one clear sentence. The CLI prints that sentence and exits with code 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class DDRMError(Exception):
    """Base class for errors caused by user input (files, options, configs)."""


class DataError(DDRMError):
    """A data file or folder is missing, malformed or inconsistent."""


class ConfigError(DDRMError):
    """A configuration key or value is unknown or invalid."""


class CheckpointError(DDRMError):
    """A checkpoint is missing, corrupted or does not match the data."""


class NoFoldIn(DDRMError):
    """The model cannot score a user it was not fitted on from an item history (e.g. iALS: a user is a factor)."""
