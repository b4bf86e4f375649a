"""``dsembed export``: a student's ONNX graphs (encoder with pooling, head), and the ``--backend`` option.

``BackendOpt`` + :func:`load_with_backend` are what every command that runs a student uses to offer
``--backend torch|onnx|onnx-int8``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from .common import App, ModelArg, setup

BACKENDS = {"torch": {}, "onnx": {"backend": "onnx"}, "onnx-int8": {"backend": "onnx", "quantized": True}}
BackendOpt = Annotated[str, typer.Option(help="torch; onnx (the student's ONNX export, fp32); onnx-int8 (its int8 "
                                              "graph). Export first with `dsembed export`")]


def backend_options(backend: str) -> dict[str, Any]:
    """The ``DSEModel.load`` keywords for a ``--backend`` value."""
    from ..errors import ConfigError

    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
    return dict(BACKENDS[backend])


def load_with_backend(path: Path, backend: str = "torch", device: str | None = None) -> Any:
    """A saved student on the chosen backend and device, or a one-line error naming the folder."""
    from ..student import DSEModel

    return DSEModel.load(path, device=device, **backend_options(backend))


def export(
    model: ModelArg,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="export folder (default: onnx/ inside "
                                                                        "the student folder)")] = None,
    format: Annotated[str, typer.Option("--format", help="export format: onnx")] = "onnx",
    quantize: Annotated[str | None, typer.Option(help="int8: also write the int8 (dynamic) encoder graph")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset")] = 17,
    per_channel: Annotated[bool, typer.Option("--per-channel/--per-tensor", help="int8 weight scales")] = True,
) -> None:
    """Export a student to ONNX: one graph for encoder + pooling, one for the head; checked against torch."""
    setup()
    import transformers

    from ..export import check_options, export_onnx

    transformers.utils.logging.disable_progress_bar()

    check_options(format, quantize, opset)
    out = export_onnx(model, output, quantize, opset=opset, per_channel=per_channel)
    from ..artifacts import ONNX_INFO

    info = json.loads((out / ONNX_INFO).read_text())
    summary = {"export": str(out), "opset": info["opset"], "inputs": info["inputs"],
               "embedding_dim": info["embedding_dim"], "graphs": {k: v["file"] for k, v in info["encoder"].items()},
               "head": info["head"]["file"], "parity_vs_torch": info["parity"]}
    typer.echo(json.dumps(summary, indent=2))


def register(app: App) -> None:
    """Add ``export`` to ``app``."""
    app.command()(export)
