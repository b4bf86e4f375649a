"""Small shared helpers: atomic writes, fingerprints, devices, seeding, a fair lock."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from .artifacts import TRAINER_STATE


def _read_umask_without_setting() -> int | None:
    """The process umask from /proc (Linux >= 4.7), or None where that is not available."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        return None
    return None


def _probe_umask() -> int:
    # os.umask can only be read by setting it; done once, at import, before worker threads exist.
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK_AT_IMPORT = _probe_umask()


def _umask() -> int:
    """The umask an ``open()`` would apply now, read without changing it (no window for threads)."""
    mask = _read_umask_without_setting()
    return _UMASK_AT_IMPORT if mask is None else mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write a file so that readers see either the old or the complete new content, never half."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file what open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling folder that replaces ``path`` only once the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def recover_atomic_dir(path: str | os.PathLike) -> list[str]:
    """Undo what a kill during :func:`atomic_dir` left beside ``path``; returns what was cleaned.

    A kill between its two renames leaves the previous complete folder as ``.name.old`` and no
    ``name``: that previous version is put back. Half-written ``.name.*.tmp`` folders are removed.
    """
    path = Path(path)
    cleaned = []
    old = path.with_name(f".{path.name}.old")
    if old.is_dir():
        if path.exists():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, path)
        cleaned.append(str(old))
    for tmp in path.parent.glob(f".{path.name}.*.tmp"):
        shutil.rmtree(tmp, ignore_errors=True) if tmp.is_dir() else tmp.unlink(missing_ok=True)
        cleaned.append(str(tmp))
    return cleaned


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(obj: Any) -> str:
    """Stable hash of a JSON-able object (sorted keys), used for config fingerprints."""
    return sha256_bytes(json.dumps(obj, sort_keys=True, default=str).encode())


def folder_fingerprint(path: str | os.PathLike,
                       patterns: tuple[str, ...] = ("*.safetensors", "*.json", "*.txt")) -> str:
    """Content hash of a model folder's weights and configs (not its timestamps)."""
    digest = hashlib.sha256()
    root = Path(path)
    files = sorted({p for pattern in patterns for p in root.rglob(pattern) if p.is_file()})
    for file in files:
        rel = file.relative_to(root).as_posix()
        if rel.startswith(("checkpoint-", ".")) or "/checkpoint-" in rel or rel == TRAINER_STATE:
            continue
        digest.update(rel.encode() + b"\0")
        with open(file, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        digest.update(b"\0")
    return digest.hexdigest()


def default_device() -> str:
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


DEVICE_CHOICES = "auto, cpu, cuda or cuda:N"


def resolve_device(spec: str | torch.device | None = "auto") -> torch.device:
    """The torch device for a ``--device`` value, refused in one line where it cannot run.

    ``auto`` (or None) picks the first GPU when there is one, else the CPU. Checked here, once, so that a
    command asked for a GPU the machine lacks stops before it loads anything (torch would fail much later,
    deep inside a model's ``.to()``, with a traceback).
    """
    from .errors import ConfigError

    text = "auto" if spec is None else str(spec).strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {spec!r}; choose {DEVICE_CHOICES}") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise ConfigError(f"unsupported device {spec!r}; choose {DEVICE_CHOICES}")
    if not torch.cuda.is_available():
        raise ConfigError(f"device {spec!r} asked for, but this machine has no CUDA GPU that torch can use "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'none'}); use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"device {spec!r} asked for, but this machine has {count} CUDA GPU(s) "
                          f"(cuda:0..cuda:{count - 1})")
    return device


def device_name(device: str | torch.device) -> str:
    """A readable name for records: the GPU's model (e.g. ``NVIDIA H200``), or the processor for the CPU."""
    import platform

    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()})"


def load_average() -> list[float] | None:
    """The 1/5/15-minute load average, rounded; a wall time on a shared machine means little without it."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def environment_record() -> dict[str, Any]:
    """Machine and library versions, stored with every result."""
    import platform
    import sys

    import transformers

    from . import __version__

    try:
        import sentence_transformers

        st_version: str | None = sentence_transformers.__version__
    except ImportError:  # the teacher side does not need it
        st_version = None

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": st_version,
        "dsembed": __version__,
        "command": " ".join(sys.argv),
    }


class FairLock:
    """A FIFO lock: waiters get it in arrival order, and a thread that releases and re-acquires queues behind them.

    ``threading.Lock`` makes no such promise (a releasing thread usually wins the lock straight back), so a
    big request taking the encoder batch after batch could starve small ones.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._waiters: deque[threading.Lock] = deque()
        self._held = False

    def acquire(self) -> None:
        with self._mutex:
            if not self._held and not self._waiters:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiters.append(turn)
        turn.acquire()  # released by the holder handing the lock over (``_held`` stays True)

    def release(self) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False

    def __enter__(self) -> FairLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
