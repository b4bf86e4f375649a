"""The speed benchmark's GPU rows: the same timers as the CPU rows, with the models and the head scan on a GPU.

Measured whenever ``BenchConfig.device`` resolves to a CUDA device (``auto``, the default, on a machine with
one), in the same run and over the same stores and queries as the CPU rows, which are measured exactly as on
a machine without a GPU. The GPU models are copies of the CPU ones moved to the device (same weights, so the
stores' model fingerprint fits both). What runs there: the student's encoding, the teacher's pair scoring,
and the exact head scan (fp32, and the bf16 screen + fp32 rescoring) with the store's blocks streamed to the
device and kept there (:mod:`dsembed.retrieval.device`). The ANN rows stay CPU only: the prefilter is faiss-cpu.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Any

import torch

from ..retrieval import CandidateStore, Hit, drop_device_cache, rank
from ..utils import device_name, resolve_device
from .measure import measure_encoding, st_encoder, time_exact, time_teacher


@dataclass
class GpuSide:
    """The bench's models on the GPU, and the teacher's measured per-pair time there (for extrapolation)."""

    device: torch.device
    name: str
    model: Any
    teacher: Any
    st: Any
    teacher_per_pair: float | None = None


def gpu_side(device_spec: str, model: Any, teacher: Any, cfg: Any, work: Any) -> GpuSide | None:
    """Copies of the CPU student, teacher and plain encoder on the GPU ``device_spec`` names; None for the CPU."""
    device = resolve_device(device_spec)
    if device.type != "cuda":
        return None
    gpu_model = copy.deepcopy(model).to(device).eval()
    gpu_teacher = copy.copy(teacher)
    gpu_teacher.model = copy.deepcopy(teacher.model).to(device).eval()
    gpu_teacher.device = str(device)
    return GpuSide(device, device_name(device), gpu_model, gpu_teacher, st_encoder(cfg, model, work, device=device))


def measure_gpu_size(gpu: GpuSide, cfg: Any, store: CandidateStore, queries: list[str], texts: list[str] | None,
                     cpu_exact: list[list[Hit]]) -> dict[str, Any]:
    """The GPU rows of one N: teacher (measured when ``texts``, else extrapolated), exact fp32 and bf16 scans.

    ``agreement_with_cpu_fp32``: the share of the CPU scan's top-k rows the GPU scan also returns (a check of
    the device path on the real hardware; fp32 sums in another order can swap near-ties).
    """
    entry: dict[str, Any] = {"device": gpu.name}
    n = store.count
    if texts is not None:
        entry["teacher"] = time_teacher(gpu.teacher, queries, texts, cfg.teacher_pair_budget, cfg.teacher_batch_size)
        gpu.teacher_per_pair = entry["teacher"]["median_seconds"] / n
    elif gpu.teacher_per_pair is not None:
        entry["teacher"] = {"median_seconds": gpu.teacher_per_pair * n, "extrapolated": True,
                            "basis": "linear in N from the GPU per-pair time at the largest measured N"}
    t0 = time.perf_counter()
    rank(gpu.model, queries[0], store, cfg.top_k, device=gpu.device)  # streams the store to the device (kept)
    if gpu.device.type == "cuda":
        torch.cuda.synchronize(gpu.device)
    entry["first_query_seconds"] = time.perf_counter() - t0
    entry["first_query_note"] = "the first fp32 query streams the store's blocks to the GPU; later ones reuse them"
    entry["exact_fp32"], entry["exact_bf16_screen"], exact = time_exact(gpu.model, store, queries, cfg.top_k,
                                                                        cfg.bf16_shortlist, device=gpu.device)
    same = sum(len({h.row for h in g} & {h.row for h in c}) for g, c in zip(exact, cpu_exact, strict=True))
    entry["agreement_with_cpu_fp32"] = same / max(1, sum(len(c) for c in cpu_exact))
    teacher_s = entry.get("teacher", {}).get("median_seconds")
    if teacher_s:
        entry["speedup_over_teacher"] = {k: teacher_s / entry[k]["median_seconds"]
                                         for k in ("exact_fp32", "exact_bf16_screen")}
    drop_device_cache()  # this N's blocks are not needed again (its store may be deleted next)
    return entry


def measure_gpu_encoding(gpu: GpuSide, sentences: list[str], batch_size: int, repeats: int) -> dict[str, Any]:
    """Encoding throughput on the GPU, dsembed vs sentence-transformers, at the CPU rows' batch size."""
    return {"device": gpu.name, **measure_encoding(gpu.model, gpu.st, sentences, batch_size, repeats)}
