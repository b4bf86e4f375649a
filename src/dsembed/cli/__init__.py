"""``dsembed`` command line: a thin layer over the Python API, one module per command group."""

from __future__ import annotations

from . import augment, bench, eval_retrieval, export, retrieval, train, use
from .common import App

app = App(help="Distilled Sentence Embedding: teacher -> logits -> siamese student -> fast pair scores.")
train.register(app)
use.register(app)
retrieval.register(app)
export.register(app)
augment.register(app)
eval_retrieval.register(app)
bench.register(app)


def main() -> None:  # pragma: no cover - console entry point
    app()


__all__ = ["app", "main"]
