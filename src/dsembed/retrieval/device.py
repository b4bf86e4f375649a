"""The store's blocks on a GPU: streamed from the memory maps through pinned host memory, kept there if they fit.

The exact head scan reads every candidate row for every query. On the CPU that is the memory-mapped
store itself (no copy). On a GPU the rows must cross PCIe first, and a 1M-row store (~3.6 GB of fp32
embeddings and projections) takes longer to copy than to score, so:

* blocks are read from the memory maps into pinned (page-locked) host buffers and copied with
  ``non_blocking=True`` on a side stream, so the copy of block ``i + 1`` overlaps the scoring of block ``i``;
* when the whole store fits in the device's memory budget (half of what is free, or
  ``$DSEMBED_DEVICE_CACHE_MB``), the copied blocks are kept on the device, keyed by the store's path and
  committed row count, so every later query scans device memory only. A store that grows (``index add``)
  gets a new key; the old blocks are dropped.

The FAISS prefilter is not here: it stays on the CPU (faiss-cpu), and only its candidates' rows are moved.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

# the scan's block on a GPU: big enough that kernel launches do not dominate (a few blocks per 1M rows)
DEVICE_BLOCK_ROWS = 262_144
CACHE_ENV = "DSEMBED_DEVICE_CACHE_MB"

BlockLoader = Callable[[int, int], Sequence[np.ndarray | Tensor]]

_CACHE: dict[tuple[Any, ...], list[tuple[int, tuple[Tensor, ...]]]] = {}
_CACHE_LOCK = threading.Lock()


def _host_tensor(block: np.ndarray | Tensor) -> Tensor:
    return block if isinstance(block, Tensor) else torch.from_numpy(np.ascontiguousarray(block))


def _budget_bytes(device: torch.device) -> int:
    """Bytes of store blocks that may stay on ``device``: ``$DSEMBED_DEVICE_CACHE_MB``, else half its free memory."""
    if os.environ.get(CACHE_ENV):
        return int(float(os.environ[CACHE_ENV]) * 2**20)
    if device.type != "cuda":  # the CPU scans the memory maps themselves: nothing to keep
        return 0
    free, _ = torch.cuda.mem_get_info(device)
    return free // 2


def stream_blocks(load: BlockLoader, n: int, block_rows: int,
                  device: torch.device) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """``(lo, tensors on device)`` for each block ``[lo, lo + block_rows)`` of ``n`` rows, copy overlapping compute.

    Block ``i + 1`` is read into pinned memory and its host-to-device copy queued on a side stream before
    block ``i`` is handed out; the compute stream waits on that copy's event only when it needs the block.
    """
    if device.type != "cuda":  # no copy engine to overlap with: plain copies, block by block
        for lo in range(0, n, block_rows):
            yield lo, tuple(_host_tensor(b).to(device, copy=True) for b in load(lo, min(lo + block_rows, n)))
        return
    copy_stream = torch.cuda.Stream(device)

    def start(lo: int) -> tuple[int, tuple[Tensor, ...], torch.cuda.Event]:
        host = [_host_tensor(b).pin_memory() for b in load(lo, min(lo + block_rows, n))]
        with torch.cuda.stream(copy_stream):
            moved = tuple(h.to(device, non_blocking=True) for h in host)
            ready = torch.cuda.Event()
            ready.record(copy_stream)
        return lo, moved, ready

    pending = start(0) if n > 0 else None
    while pending is not None:
        lo, moved, ready = pending
        following = lo + block_rows
        pending = start(following) if following < n else None
        compute = torch.cuda.current_stream(device)
        compute.wait_event(ready)
        for tensor in moved:
            tensor.record_stream(compute)  # the copy stream's memory is in use on the compute stream now
        yield lo, moved


def device_blocks(key: tuple[Any, ...], load: BlockLoader, n: int, block_rows: int, row_bytes: int,
                  device: torch.device) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """The store's blocks on ``device``: from the resident copy when there is one, else streamed (and kept if they fit).

    ``key`` names what is loaded (store path, row count, which files); ``row_bytes``: bytes a row takes on the device.
    """
    full_key = (*key, n, block_rows, str(device))
    with _CACHE_LOCK:
        cached = _CACHE.get(full_key)
    if cached is not None:
        yield from cached
        return
    keep = n * row_bytes <= _budget_bytes(device)
    kept: list[tuple[int, tuple[Tensor, ...]]] = []
    for lo, moved in stream_blocks(load, n, block_rows, device):
        if keep:
            kept.append((lo, moved))
        yield lo, moved
    if keep and kept:
        with _CACHE_LOCK:
            for old in [k for k in _CACHE if k[:2] == full_key[:2]]:  # same store and files, older row count
                del _CACHE[old]
            _CACHE[full_key] = kept


def drop_device_cache() -> None:
    """Free every store block kept on a GPU (a long-lived process that is done with its stores)."""
    with _CACHE_LOCK:
        _CACHE.clear()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
