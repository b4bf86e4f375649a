"""Train full-size cross-encoder teachers on a GPU and bring back only their logits.

For each (seed, task): fine-tune the teacher with dsembed's own ``train_teacher`` (same recipe
code as on the CPU), then write a portable logits bundle (train + dev logits with per-pair
hashes, plus the teacher's record: recipe, wall times, device, versions). The bundles, a few
hundred KB each, are re-packed into one tar after every teacher, so a run stopped at its time
limit still returns what it finished. On the CPU machine:

    dsembed pipeline mrpc --teacher-logits results/teachers/mrpc-mpnet-s42

``--smoke`` swaps the base for a tiny random model of the same architecture and a few dozen
pairs: a minute-long check that the whole script runs on the device before the real job.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tarfile
import time
from pathlib import Path

from dsembed.artifacts import CHECKPOINTS_DIR
from dsembed.data import load_glue
from dsembed.evaluation import compute_metrics
from dsembed.tasks import get_task
from dsembed.teacher import Teacher, train_teacher, write_logits_bundle
from dsembed.teacher.train import TeacherRecipe  # not exported by dsembed.teacher
from dsembed.utils import environment_record

logger = logging.getLogger("gpu_teachers")


def _tiny_like(base: Path, folder: Path) -> Path:
    """A randomly initialised 2-layer model of ``base``'s architecture, with its tokenizer."""
    import torch
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    config = AutoConfig.from_pretrained(str(base))
    config.update({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64})
    torch.manual_seed(0)
    AutoModel.from_config(config).save_pretrained(str(folder), safe_serialization=True)
    AutoTokenizer.from_pretrained(str(base)).save_pretrained(str(folder))
    return folder


def _pack(bundles: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    with tarfile.open(tmp, "w") as tar:
        tar.add(bundles, arcname=bundles.name)
    tmp.replace(target)


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", type=Path, required=True, help="encoder folder to fine-tune")
    parser.add_argument("--base-name", default=None, help="short name for bundle folders (default: folder name)")
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--tasks", default="mrpc,stsb,rte")
    parser.add_argument("--seeds", default="42,43")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/dsembed-teachers"))
    parser.add_argument("--bundles", type=Path, default=Path("/tmp/teacher_bundles"))
    parser.add_argument("--out", type=Path, default=Path(os.environ.get("OUT", "/tmp/out")))
    parser.add_argument("--budget-seconds", type=float, default=420.0,
                        help="start no new teacher after this many seconds")
    parser.add_argument("--smoke", action="store_true")
    return parser.parse_args()


def main() -> None:
    args = _parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    started = time.perf_counter()
    base = args.base
    name = args.base_name or base.name
    limit = None
    if args.smoke:
        base = _tiny_like(base, args.work / "tiny-base")
        name, limit = f"smoke-{name}", 40
    args.out.mkdir(parents=True, exist_ok=True)
    args.bundles.mkdir(parents=True, exist_ok=True)
    env = environment_record()
    summary: list[dict] = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for task_name in args.tasks.split(","):
            elapsed = time.perf_counter() - started
            if elapsed > args.budget_seconds:
                logger.warning("budget spent (%.0f s): skipping %s seed %d", elapsed, task_name, seed)
                summary.append({"task": task_name, "seed": seed, "skipped": "time budget"})
                continue
            task = get_task(task_name)
            train = load_glue(task, "train", data_dir=args.data_dir, source="local")
            dev = load_glue(task, "dev", data_dir=args.data_dir, source="local")
            if limit:
                train, dev = train.subset(limit, seed=0), dev.subset(limit, seed=0)
            recipe = TeacherRecipe(base=str(base), epochs=args.epochs, learning_rate=args.learning_rate,
                                   batch_size=args.batch_size, seed=seed)
            t0 = time.perf_counter()
            path = train_teacher(task, train, dev, args.work / f"{task_name}-{name}-s{seed}", recipe,
                                 show_progress_bar=False)
            train_wall = time.perf_counter() - t0
            teacher = Teacher(path, task)
            t1 = time.perf_counter()
            folder = args.bundles / f"{task_name}-{name}-s{seed}"
            bundle = write_logits_bundle(teacher, train, dev, folder, batch_size=128, show_progress_bar=False,
                                         extra_info={"base_name": name, "seed": seed, "environment": env,
                                                     "teacher_train_wall_seconds": train_wall})
            bundle.info["logits_wall_seconds"] = time.perf_counter() - t1
            bundle.info["dev_metrics_from_logits"] = compute_metrics(task, bundle.dev.logits, dev.labels,
                                                                     teacher=True)
            bundle.save(folder)
            summary.append({"task": task_name, "seed": seed, "train_seconds": round(train_wall, 1),
                            "dev": bundle.info["dev_metrics_from_logits"]})
            logger.info("%s", json.dumps(summary[-1]))
            (args.bundles / "summary.json").write_text(json.dumps(summary, indent=2))
            _pack(args.bundles, args.out / "teacher_bundles.tar")
            shutil.rmtree(args.work / f"{task_name}-{name}-s{seed}" / CHECKPOINTS_DIR, ignore_errors=True)
    (args.bundles / "summary.json").write_text(json.dumps(summary, indent=2))
    _pack(args.bundles, args.out / "teacher_bundles.tar")
    print(json.dumps(summary, indent=2))
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
