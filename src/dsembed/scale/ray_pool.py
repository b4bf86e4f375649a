"""The Ray side shared by both jobs: connecting to Ray, and one ``map_batches`` over an actor pool.

Work goes out as one row per chunk (its index and its texts); every actor loads its model once and
sends back each chunk's result as ``.npy`` bytes (dtype and shape kept, so nothing is rounded on the
way). The driver alone writes files, which is why a job's output can live on the driver's own disk.
"""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from .. import errors
from ..errors import ConfigError, DsembedError

logger = logging.getLogger("dsembed.scale")

LOCAL = "local"  # the address that means: start a local Ray, or attach to the one running on this machine


@dataclass(frozen=True)
class RayOptions:
    """Where a job runs and how wide its actor pool is."""

    address: str | None = None  # None/"local": start or attach a local Ray; "auto": the running cluster; HOST:PORT
    concurrency: int = 2  # actors in the pool; each loads the model once
    num_cpus: float = 1.0  # per actor (also its torch threads)
    num_gpus: float = 0.0  # per actor; > 0 runs the model on the actor's GPU

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.num_cpus <= 0 or self.num_gpus < 0:
            raise ConfigError(f"Ray needs concurrency >= 1, num_cpus > 0 and num_gpus >= 0, got {self.concurrency}, "
                              f"{self.num_cpus} and {self.num_gpus}")

    @property
    def device(self) -> str:
        return "cuda" if self.num_gpus > 0 else "cpu"

    @property
    def threads(self) -> int:
        return max(1, int(self.num_cpus))


def import_ray() -> Any:
    """The ``ray`` module, or a one-line error saying how to get it (Ray is an optional extra)."""
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:
        raise ConfigError("the Ray jobs need Ray Data: pip install 'dsembed[ray]' (or 'ray[data]')") from exc
    return ray


@contextmanager
def ray_session(address: str | None = None) -> Iterator[Any]:
    """Ray, connected: the session already open in this process, or one opened here and shut down after.

    ``None`` or ``"local"`` starts a local Ray (or attaches to one started on this machine with
    ``ray start``); ``"auto"`` attaches to the running cluster and fails if there is none.
    """
    ray = import_ray()
    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=None if address in (None, "", LOCAL) else address)
    except ConnectionError as exc:
        raise ConfigError(f"cannot reach a Ray cluster at {address!r}: {exc}") from exc
    try:
        yield ray
    finally:
        ray.shutdown()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def from_npy_bytes(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


def run_pool(ray: Any, rows: list[dict[str, Any]], actor: type, constructor_kwargs: dict[str, Any],
             options: RayOptions, *, ordered: bool = False,
             progress: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """(chunk, result) for every row, from a pool of ``options.concurrency`` ``actor`` instances.

    Each row is its own block so that idle actors pick up chunks one by one; ``ordered`` asks Ray to
    hand results back in row order (the store needs that; logits chunks can be committed in any order).
    """
    ds = ray.data.from_items(rows, override_num_blocks=max(1, len(rows)))
    ds = ds.map_batches(actor, batch_size=1, batch_format="pyarrow", fn_constructor_kwargs=constructor_kwargs,
                        compute=ray.data.ActorPoolStrategy(size=options.concurrency), num_cpus=options.num_cpus,
                        num_gpus=options.num_gpus or None)
    ds.context.execution_options.preserve_order = ordered
    ds.context.enable_progress_bars = progress
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            for chunk, blob in zip(batch["chunk"], batch["npy"], strict=True):
                yield int(chunk), from_npy_bytes(blob)
    except ray.exceptions.RayError as exc:
        raise remote_error(exc) from exc


_REMOTE_ERROR = re.compile(r"^dsembed\.errors\.(\w+): (.*)$", re.MULTILINE)


def remote_error(exc: Exception) -> Exception:
    """A dsembed error raised in an actor, as that error (a one-line CLI message), not Ray's wrapped traceback."""
    found = _REMOTE_ERROR.findall(str(exc))
    if not found:
        return exc
    name, message = found[-1]
    kind = getattr(errors, name, DsembedError)
    kind = kind if isinstance(kind, type) and issubclass(kind, DsembedError) else DsembedError
    return kind(f"on a Ray worker: {message}")


def chunk_results(chunks: list[int], results: list[np.ndarray]) -> dict[str, np.ndarray]:
    """What an actor returns for a batch: chunk indices and their results as ``.npy`` bytes."""
    return {"chunk": np.asarray(chunks, dtype=np.int64),
            "npy": np.asarray([npy_bytes(r) for r in results], dtype=object)}
