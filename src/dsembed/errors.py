"""Every error a user can cause, under one base class.

The command line turns any :class:`DsembedError` into ``error: <message>`` and exit code 2; anything
else is a bug and keeps its traceback. Each class also derives from the built-in exception it
refines (``ValueError``, ``FileNotFoundError``, ...) so that callers catching those keep working.
"""

from __future__ import annotations

import os
from typing import Any

PathLike = str | os.PathLike[str]


class DsembedError(Exception):
    """Base of every user-facing dsembed error: the message says what went wrong and where."""


class ConfigError(DsembedError, ValueError):
    """An option or setting that cannot work (unknown name, out-of-range value, conflicting choices)."""


class InputNotFoundError(DsembedError, FileNotFoundError):
    """A file or folder the user named does not exist or is not what it should be."""


class CorruptFileError(DsembedError, ValueError):
    """A file dsembed reads (logits, store, checkpoint) is damaged or is not the kind of file it should be."""


class UnsafeModelError(DsembedError, ValueError):
    """A model folder asks to run code dsembed did not write (custom modules, ``auto_map``, changed pooling code)."""


class DataFormatError(DsembedError, ValueError):
    """A malformed input file; carries where (``path``, 1-based ``line``) and what (``problem``)."""

    def __init__(self, path: PathLike, line: int, problem: str) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        super().__init__(f"{self.path}:{line}: {problem}")

    def __reduce__(self) -> tuple[Any, ...]:  # keep picklable (multiprocessing / dataloader workers)
        return (type(self), (self.path, self.line, self.problem))


class RunConfigMismatch(DsembedError, ValueError):
    """A run folder holds work made with other settings or data; resuming it would mix the two."""


class StaleLogitsError(DsembedError, ValueError):
    """Stored logits belong to another teacher or to other pairs."""


class StoreError(DsembedError, ValueError):
    """A candidate store that cannot be used as asked (missing, corrupt, conflicting ingest)."""


class ModelMismatchError(StoreError):
    """The store was built with another model: its embeddings and precomputation do not fit this one."""


class StoreCorruptError(StoreError, CorruptFileError):
    """A store file is damaged: caught as a :class:`StoreError` (store problem) or a :class:`CorruptFileError`."""


class WeightsIntegrityError(DsembedError, RuntimeError):
    """A file's sha256 differs from the pinned digest (truncated download, corrupt cache, tampering).

    ``actual`` is ``None`` when the file is missing altogether.
    """

    def __init__(self, path: PathLike, expected: str, actual: str | None, hint: str = "") -> None:
        self.path = str(path)
        self.expected = expected
        self.actual = actual
        self.hint = hint
        got = "the file is missing" if actual is None else f"actual sha256 {actual}"
        message = f"{self.path}: integrity check failed: expected sha256 {expected}, {got}"
        super().__init__(f"{message}. {hint}" if hint else message)

    def __reduce__(self) -> tuple[Any, ...]:  # keep picklable (multiprocessing / dataloader workers)
        return (type(self), (self.path, self.expected, self.actual, self.hint))


class CacheSpaceError(DsembedError, OSError):
    """Not enough free disk space in dsembed's cache for what it must write there."""


class OfflineBaseMissingError(DsembedError, RuntimeError):
    """A known offline base was asked for while offline, but its package is not installed."""
