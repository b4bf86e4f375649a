#!/usr/bin/env python
"""torch fp32 vs ONNX fp32 vs ONNX int8, side by side in one run: encoding throughput, dev metrics, differences.

Each student given (``--student TASK=FOLDER``) is exported to ONNX (fp32, int8 with per-channel weights,
int8 with per-tensor weights) into the work folder. Then, for each thread count, ``encode`` of the same
sentences at the same batch size is timed under every backend, the backends taking turns within each repeat
(medians of ``--repeats``), with the load average before and after; the timing comes first so that a run
started on a quiet machine times on a quiet machine. Last, each student's dev metric under every backend and
each graph's differences from the torch model on the dev sentences. With no student it times an
all-MiniLM-L6-v2 student with an untrained head (speed only).

    python benchmarks/export_bench.py --student mrpc=RUN/mrpc/dse_student/model \\
        --student stsb=RUN/stsb/dse_student/model     ->  results/export/backends.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dsembed.artifacts import EXPORT_BENCH_RECORD
from dsembed.data import load_glue
from dsembed.evaluation import evaluate_student
from dsembed.export import differences, export_onnx, time_encoders
from dsembed.student import DSEModel
from dsembed.tasks import get_task
from dsembed.utils import atomic_write_json, environment_record, load_average

ROOT = Path(__file__).resolve().parents[1]
# backend -> (export variant folder, quantized): every row loads from one of the exports made here
BACKENDS = {"torch_fp32": (None, False), "onnx_fp32": ("per_channel", False), "onnx_int8": ("per_channel", True),
            "onnx_int8_per_tensor": ("per_tensor", True)}


def _export(student: Path, work: Path) -> dict[str, Path]:
    """The student's ONNX folders: int8 with per-channel weights (+ fp32), and int8 with per-tensor weights."""
    return {"per_channel": export_onnx(student, work / "per_channel", quantize="int8", per_channel=True),
            "per_tensor": export_onnx(student, work / "per_tensor", quantize="int8", per_channel=False)}


def _load(student: Path, exports: dict[str, Path], backend: str, threads: int) -> DSEModel:
    folder, quantized = BACKENDS[backend]
    if folder is None:
        return DSEModel.load(student, device="cpu")
    return DSEModel.load(exports[folder], backend="onnx", quantized=quantized, intra_op_num_threads=threads)


def quality(task_name: str, student: Path, exports: dict[str, Path], glue_dir: str | None) -> dict[str, Any]:
    """Dev metrics of every backend, and each ONNX backend's differences from torch on the dev sentences."""
    task = get_task(task_name)
    dev = load_glue(task, "dev", data_dir=glue_dir)
    sentences = list(dict.fromkeys(dev.sentence1 + dev.sentence2))
    models = {name: _load(student, exports, name, torch.get_num_threads()) for name in BACKENDS}
    out: dict[str, Any] = {"task": task.name, "main_metric": task.main_metric, "dev_pairs": len(dev),
                           "dev_sentences": len(sentences), "student": str(student), "backends": {}}
    outputs = {}
    for name, model in models.items():
        t0 = time.perf_counter()
        metrics, logits = evaluate_student(model, task, dev, show_progress_bar=False)
        entry: dict[str, Any] = {"dev_metrics": metrics, "eval_seconds": round(time.perf_counter() - t0, 2)}
        outputs[name] = (model.encode(sentences, batch_size=64, show_progress_bar=False), logits)
        if name != "torch_fp32":
            (ref_emb, ref_logits), emb = outputs["torch_fp32"], outputs[name][0]
            entry["vs_torch"] = differences(ref_emb, emb, ref_logits, logits)
            main = task.main_metric
            entry["main_metric_change_points"] = metrics[main] - out["backends"]["torch_fp32"]["dev_metrics"][main]
        out["backends"][name] = entry
    return out


def speed(student: Path, exports: dict[str, Path], sentences: list[str], threads: list[int], batch_size: int,
          repeats: int) -> dict[str, Any]:
    """Sentences/s of every backend at each thread count: same sentences, batch size, one process."""
    out: dict[str, Any] = {}
    for n in threads:
        torch.set_num_threads(n)
        models = {name: _load(student, exports, name, n) for name in BACKENDS}
        before = load_average()
        timing = time_encoders(models, sentences, batch_size=batch_size, repeats=repeats)
        base = timing["torch_fp32"]["sentences_per_s_median"]
        for entry in timing.values():
            entry["speedup_over_torch_fp32"] = entry["sentences_per_s_median"] / base
        after = load_average()
        # our own n threads add about n to the load; more than the cores means other work took CPU from the run
        contended = bool(before and after and max(before[0], after[0]) > (os.cpu_count() or 1) + 0.5)
        out[str(n)] = {"threads": n, "load_average_before": before, "load_average_after": after,
                       "contended": contended, "backends": timing}
        del models
    return out


def bench_sentences(n: int, glue_dir: str | None, seed: int = 0) -> list[str]:
    """``n`` distinct GLUE dev sentences (MRPC and STS-B), in a seeded random order."""
    pool: dict[str, None] = {}
    for task in ("mrpc", "stsb"):
        dev = load_glue(task, "dev", data_dir=glue_dir)
        pool.update(dict.fromkeys(dev.sentence1 + dev.sentence2))
    texts = list(pool)
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n]]


def _targets(record: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, met or missed, from the measured numbers."""
    out = []
    for n, block in record["speed"].items():
        ratio = block["backends"]["onnx_int8"]["speedup_over_torch_fp32"]
        entry = {"target": f"int8 >= 2x torch fp32 encoding throughput ({n} thread(s))", "measured": ratio,
                 "met": ratio >= 2.0}
        if block["contended"]:
            entry["note"] = "the CPU was oversubscribed by other work during this block: not a valid comparison"
        out.append(entry)
    for task, q in record.get("quality", {}).items():
        drop = -q["backends"]["onnx_int8"]["main_metric_change_points"]
        out.append({"target": f"int8 loses <= 0.5 points of {task} dev {q['main_metric']}", "measured": -drop,
                    "met": drop <= 0.5})
        diff = max(q["backends"]["onnx_fp32"]["vs_torch"][k] for k in ("max_abs_embedding_diff", "max_abs_logit_diff"))
        out.append({"target": f"ONNX fp32 within 1e-4 of torch ({task} dev)", "measured": diff, "met": diff <= 1e-4})
    return out


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--student", action="append", default=[], metavar="TASK=FOLDER",
                        help="a trained student and its GLUE task (repeatable)")
    parser.add_argument("--speed-student", default=None, help="which student to time (default: the first given)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--sentences", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--glue-dir", default=None)
    parser.add_argument("--work", type=Path, default=None, help="where the exports go (default: a temp folder)")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "export")
    parser.add_argument("--note", action="append", default=[], help="a note for the record (repeatable)")
    return parser.parse_args()


def main() -> None:
    """Exports first, then the timing (start the run on a quiet machine), then the dev metrics."""
    args = _arguments()
    students = {task: Path(folder) for task, folder in (s.split("=", 1) for s in args.student)}
    work = args.work or Path(tempfile.mkdtemp(prefix="dsembed-export-bench-"))
    record: dict[str, Any] = {"benchmark": "dsembed backends: torch fp32 vs ONNX fp32 vs ONNX int8",
                              "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "environment": environment_record(),
                              "command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "load_average_start": load_average(), "notes": list(args.note), "exports": {}}
    started = time.perf_counter()
    speed_task = args.speed_student or next(iter(students), None)
    if speed_task is None:
        students["untrained"] = _untrained_student(work)
        record["notes"].append("no trained student given: throughput of an all-MiniLM-L6-v2 student with an "
                               "untrained head (valid for speed; no dev metrics)")
        speed_task = "untrained"
    exports = {task: _export(folder, work / task) for task, folder in students.items()}
    record["exports"] = {task: _export_info(folders) for task, folders in exports.items()}
    sentences = bench_sentences(args.sentences, args.glue_dir)
    record["speed_setup"] = {"student": speed_task, "folder": str(students[speed_task]), "sentences": len(sentences),
                             "mean_characters": float(np.mean([len(s) for s in sentences])),
                             "batch_size": args.batch_size, "repeats": args.repeats,
                             "order": "backends take turns within each repeat; one untimed warm-up each"}
    record["speed"] = speed(students[speed_task], exports[speed_task], sentences, args.threads, args.batch_size,
                            args.repeats)
    _save(args.out, record)
    record["quality"] = {task: quality(task, folder, exports[task], args.glue_dir)
                         for task, folder in students.items() if task != "untrained"}
    record["targets"] = _targets(record)
    record["load_average_end"] = load_average()
    record["total_seconds"] = round(time.perf_counter() - started, 1)
    busy = [n for n, block in record["speed"].items() if block["contended"]]
    if busy or (record["load_average_start"] or [0])[0] > 1.0:  # > 1 before this run had started: other work
        record["notes"].append(f"the CPU was shared with other work (load average {record['load_average_start']} "
                               f"at the start; thread blocks contended: {busy or 'none'}): absolute rates are "
                               "pessimistic; all backends were timed in the same run, in turns")
    path = _save(args.out, record)
    print(json.dumps({"speed": {n: {k: round(v["sentences_per_s_median"], 1) for k, v in b["backends"].items()}
                                for n, b in record["speed"].items()},
                      "targets": record["targets"]}, indent=2))
    print(f"wrote {path}")


def _export_info(exports: dict[str, Path]) -> dict[str, Any]:
    from dsembed.artifacts import ONNX_INFO

    out = {}
    for name, folder in exports.items():
        info = json.loads((folder / ONNX_INFO).read_text())
        out[name] = {"folder": str(folder), "opset": info["opset"], "parity_probe": info["parity"],
                     "encoder": info["encoder"], "export_seconds": info["export_seconds"],
                     "bytes": {p.name: p.stat().st_size for p in folder.glob("*.onnx")}}
    return out


def _untrained_student(work: Path) -> Path:
    folder = work / "untrained-student"
    if not folder.is_dir():
        DSEModel.from_base("all-MiniLM-L6-v2", get_task("mrpc"), device="cpu").save(folder)
    return folder


def _save(out: Path, record: dict[str, Any]) -> Path:
    path = out / EXPORT_BENCH_RECORD
    atomic_write_json(path, record)
    return path


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
