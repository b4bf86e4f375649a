"""The model card (README.md) every saved student carries: what it is, how it was made, how well it does.

Written by dsembed from the student's own files (``dse_config.json``, and ``dsembed_card.json`` for
what only a pipeline run knows: the teacher, test metrics, fidelity to the teacher), so it never
claims a number that is not in a record. It stays a valid sentence-transformers / Hugging Face card
(YAML front matter first).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import CARD_FACTS, MODEL_CARD, ONNX_DIR, POOLING_CODE, STUDENT_CONFIG
from ..utils import atomic_write_bytes, atomic_write_json

_POOLING_TEXT = {
    "topk": "masked mean over tokens of each of the top {k} hidden layers, concatenated ({dim} dimensions)",
    "mean": "masked mean over the tokens of the last layer ({dim} dimensions)",
    "cls": "the [CLS] token of the last layer ({dim} dimensions)",
}


def update_model_card(folder: str | Path, facts: dict[str, Any] | None = None) -> Path:
    """Merge ``facts`` into the folder's card facts and rewrite its README.md; returns the card's path."""
    folder = Path(folder)
    known = json.loads((folder / CARD_FACTS).read_text()) if (folder / CARD_FACTS).is_file() else {}
    known.update(facts or {})
    if facts:
        atomic_write_json(folder / CARD_FACTS, known)
    config = json.loads((folder / STUDENT_CONFIG).read_text())
    text = model_card(config, known, has_onnx=(folder / ONNX_DIR).is_dir(),
                      ships_pooling_code=(folder / POOLING_CODE).is_file())
    atomic_write_bytes(folder / MODEL_CARD, text.encode())
    return folder / MODEL_CARD


def _metrics(values: dict[str, float] | None) -> str:
    if not values:
        return "not measured"
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(values.items()) if isinstance(v, int | float)
                     and k not in ("loss", "epoch") and not k.endswith(("_runtime", "_per_second")))


def _front_matter(config: dict[str, Any], task: dict[str, Any]) -> list[str]:
    return ["---", "library_name: sentence-transformers", "pipeline_tag: sentence-similarity",
            f"base_model: {config.get('base_model') or 'unknown'}",
            "tags:", "- sentence-transformers", "- sentence-similarity", "- dsembed", "- distillation",
            f"- {task.get('name', 'pairs')}", "---", ""]


def _results_table(facts: dict[str, Any], training: dict[str, Any]) -> list[str]:
    teacher = facts.get("teacher", {})
    rows = [("teacher (cross-encoder)", teacher.get("dev_metrics"), teacher.get("test_metrics")),
            ("this student (head)", facts.get("dev_metrics") or training.get("dev_metrics"),
             facts.get("test_metrics"))]
    lines = ["| model | dev | test |", "|---|---|---|"]
    lines += [f"| {name} | {_metrics(dev)} | {_metrics(test)} |" for name, dev, test in rows]
    fidelity = facts.get("fidelity_dev")
    if fidelity:
        lines += ["", f"Fidelity to the teacher on the dev pairs: Spearman {fidelity.get('spearman', float('nan')):.2f}"
                      f", logit MSE {fidelity.get('logit_mse', float('nan')):.3f}, decision agreement "
                      f"{fidelity.get('decision_agreement', float('nan')):.2f}%."]
    return lines


def _usage(config: dict[str, Any], ships_pooling_code: bool, has_onnx: bool) -> list[str]:
    remote = ", trust_remote_code=True" if ships_pooling_code else ""
    lines = ["## Use", "", "With dsembed (embeddings and the pair head):", "", "```python",
             "from dsembed import DSEModel", "model = DSEModel.load(\"PATH\")",
             "emb = model.encode([\"A man plays guitar.\"])",
             "score = model.predict([(\"A man plays guitar.\", \"Someone plays an instrument.\")])", "```", "",
             "Without dsembed, as a plain embedding model (cosine similarity, no head):", "", "```python",
             "from sentence_transformers import SentenceTransformer",
             f"model = SentenceTransformer(\"PATH\"{remote})", "```", ""]
    if ships_pooling_code:
        lines += ["`trust_remote_code=True` is needed because the top-k layer pooling is not a stock "
                  "sentence-transformers module: it ships in this folder as `dsembed_pooling.py` (torch only); "
                  "dsembed itself runs that file only when it is byte-identical to its own.", ""]
    if has_onnx:
        lines += ["ONNX graphs of the encoder with its pooling and of the head are in `onnx/` "
                  "(`DSEModel.load(\"PATH\", backend=\"onnx\")`; no `trust_remote_code` needed).", ""]
    lines += ["The head scores a pair from the two sentence embeddings alone, so candidates are embedded once "
              "and each query costs one encoder pass plus vector arithmetic: `dsembed index build` and "
              "`dsembed search` rank a query against millions of stored candidates with it.", ""]
    return lines


def _length(training: dict[str, Any]) -> str:
    """How long it trained: epochs, or the optimiser steps of a step-budgeted run (mined pairs, max_steps)."""
    if training.get("max_steps") or training.get("equal_compute") or training.get("mined"):
        return f"{training.get('optimizer_steps', training.get('max_steps'))} optimiser steps"
    return f"{training.get('epochs')} epochs"


def _augmentation(mined: dict[str, Any] | None) -> list[str]:
    """The card line for a student trained on teacher-scored mined pairs too (none without them)."""
    if not mined:
        return []
    strategies = ", ".join(f"{name} {count}" for name, count in mined.get("strategies", {}).items())
    target = ("the teacher's hard labels / scores as task labels" if mined.get("recipe") == "augsbert"
              else "the distillation term only (no task loss)")
    return [f"- Augmentation: {mined.get('count')} unlabelled pairs mined and scored by the teacher "
            f"({strategies}), {mined.get('ratio')} mined rows per labelled row ({mined.get('sampling')} batches), "
            f"trained with {target}; {mined.get('steps')} optimiser steps in all."]


def model_card(config: dict[str, Any], facts: dict[str, Any], *, has_onnx: bool = False,
               ships_pooling_code: bool = False) -> str:
    """The card's Markdown from the student's config and the facts a pipeline run recorded."""
    task, training = config.get("task", {}), config.get("training", {})
    teacher = facts.get("teacher", {})
    pooling = _POOLING_TEXT.get(config.get("pooling", ""), "{dim}-dimensional pooling").format(
        k=config.get("top_k"), dim=config.get("embedding_dim"))
    alpha = training.get("alpha")
    augsbert = training.get("recipe") == "augsbert"
    kind = ("AugSBERT student (task loss on gold and teacher-labelled pairs)" if augsbert else
            "DSE student" if alpha else "label-only student (alpha = 0, no teacher term)")
    loss = ("task loss alone on the gold pairs and on mined pairs labelled by the teacher (AugSBERT; "
            "alpha not used)" if augsbert else f"(1 − α)·task + α·MSE to the teacher logits with α = {alpha}")
    lines = [*_front_matter(config, task), f"# {task.get('name', 'pair task')} {kind} (dsembed)", "",
             "Distilled Sentence Embedding (Barkan et al., AAAI 2020): a siamese student that embeds each sentence "
             "alone, with a small head over the two vectors trained to reproduce a cross-encoder teacher's scores.", "",
             "## What it is", "",
             f"- Base encoder: `{config.get('base_model')}`, shared for both sentences; pooling: {pooling}.",
             f"- Head: `[u, v, u*v, |u-v|]` → Linear({config.get('head_hidden')}) → ReLU → "
             f"Linear({'1' if task.get('kind') != 'multiclass' else len(task.get('labels', ()))}).",
             f"- Task: {task.get('name')} ({task.get('kind')}; labels "
             f"{', '.join(task.get('labels') or ()) or 'a score'}); trained on {training.get('train_pairs', '?')} pairs"
             + (f" from {facts['train_source']}" if facts.get("train_source") else "") + ".",
             f"- Teacher: {teacher.get('description', 'not recorded (trained outside a dsembed pipeline run)')}.",
             *_augmentation(training.get("mined")),
             f"- Training: loss {loss}; encoder lr "
             f"{training.get('learning_rate')}, head lr {training.get('head_learning_rate')}, batch "
             f"{training.get('batch_size')}, {_length(training)}, warmup {training.get('warmup_ratio')}, "
             f"weight decay {training.get('weight_decay')}, seed {training.get('seed')}; the best dev evaluation "
             f"({training.get('best_checkpoint')}) was kept.", "", "## Results", "",
             *_results_table(facts, training), "",
             *_usage(config, ships_pooling_code, has_onnx),
             "## Intended use and limits", "",
             f"Scoring and ranking sentence pairs like those of {task.get('name')} (search, deduplication, "
             "paraphrase/QA matching) where a cross-encoder is too slow. The head was trained on the task's pairs "
             "only: how it orders unrelated candidates is not what it learnt, so check ranking quality on your own "
             "data before relying on it. English only (the base model's). Metrics above are on the GLUE splits "
             "named; the dev split also selected the kept epoch, so the test column is the unbiased one.", ""]
    return "\n".join(lines)
