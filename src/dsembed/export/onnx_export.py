"""Export a student to ONNX: one graph for the encoder *with* its pooling, one for the pair head.

Why not sentence-transformers' own ``backend="onnx"`` (via optimum): it exports only the transformer
(``last_hidden_state``) and leaves pooling to PyTorch, and it knows nothing of our top-k layer concatenation
(``LayerConcatMeanPooling`` needs every hidden state) or of the head. Here the whole
``SentenceTransformer`` (transformer + pooling module) is traced into one graph, so a deployment needs
onnxruntime and a tokenizer, nothing else.

The TorchScript exporter (``dynamo=False``) is used: the dynamo exporter needs ``onnxscript`` and brings
nothing for these encoders. Opset 17 (native LayerNormalization; every onnxruntime of the last years runs
it). Batch and sequence axes are dynamic; every export is checked against the torch model on probe
sentences of several lengths (padding and truncation included) before it is kept.
"""

from __future__ import annotations

import copy
import inspect
import json
import os
import time
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor, nn

from .. import __version__
from ..artifacts import (
    ONNX_DIR,
    ONNX_ENCODER,
    ONNX_ENCODER_INT8,
    ONNX_HEAD,
    ONNX_INFO,
    ST_MODULES,
    STUDENT_CONFIG,
    STUDENT_HEAD,
    WEIGHTS,
)
from ..errors import ConfigError
from ..student import DSEModel, update_model_card
from ..student.onnx_backend import FORMAT_VERSION, INPUT_NAMES, OnnxDSEModel, file_sha256, load_onnx_student
from ..utils import atomic_dir, atomic_write_json, sha256_bytes
from .compare import compare_models
from .quantize import quantize_encoder

FORMATS = ("onnx",)
QUANTIZATIONS = ("int8",)
DEFAULT_OPSET = 17
MIN_OPSET = 14  # scaled_dot_product_attention and the masked means need at least this
FP32_TOLERANCE = 1e-3  # an export whose fp32 embeddings differ more than this from torch is refused

# Probe sentences for the export check: several lengths (so batches pad), one past any max_seq_length.
PROBE = [
    "A man is playing a guitar.",
    "The cat sat on the mat while the dog slept by the warm fire in the old house.",
    "Stocks fell sharply on Monday.",
    "Hello",
    "The company said on Tuesday that third-quarter profit rose 12 percent, helped by strong demand for its "
    "new phones, while revenue from services grew faster than analysts had expected. " * 6,
    "Two dogs run through a field of tall grass near the river.",
    "Is it going to rain tomorrow in Paris, or will the sun come out again?",
]


class _EncoderGraph(nn.Module):
    """Token tensors in the graph's input order -> the sentence embedding (transformer + pooling)."""

    def __init__(self, encoder: nn.Module, names: tuple[str, ...]) -> None:
        super().__init__()
        self.encoder = encoder
        self.names = names

    def forward(self, *inputs: Tensor) -> Tensor:
        return self.encoder(dict(zip(self.names, inputs, strict=True)))["sentence_embedding"]


class _HeadGraph(nn.Module):
    def __init__(self, head: nn.Module) -> None:
        super().__init__()
        self.head = head

    def forward(self, u: Tensor, v: Tensor) -> Tensor:
        return self.head(u, v)


def check_options(format: str = "onnx", quantize: str | None = None, opset: int = DEFAULT_OPSET) -> None:
    """Refuse an unknown format, quantisation or opset before any model is loaded."""
    if format not in FORMATS:
        raise ConfigError(f"unknown export format {format!r}; choose {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZATIONS:
        raise ConfigError(f"unknown quantization {quantize!r}; choose {', '.join(QUANTIZATIONS)}, or leave it out "
                          "for fp32 only")
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= 21:
        raise ConfigError(f"opset must be a whole number from {MIN_OPSET} to 21, got {opset!r}")
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ConfigError("ONNX export needs onnx and onnxruntime: pip install 'dsembed[onnx]'") from exc


def export_onnx(model_or_path: DSEModel | str | os.PathLike[str], out_dir: str | os.PathLike[str] | None = None,
                quantize: str | None = None, *, opset: int = DEFAULT_OPSET, per_channel: bool = True) -> Path:
    """Export a student (a folder or a torch :class:`DSEModel`) to ``out_dir``; returns the folder.

    ``out_dir`` defaults to ``onnx/`` inside the student folder, so one folder carries both. It holds
    ``encoder.onnx`` (+ ``encoder.int8.onnx`` with ``quantize="int8"``), ``head.onnx``, the tokenizer,
    ``dse_config.json``, ``dse_head.safetensors`` and ``dsembed_onnx.json`` (what it is, where it came from,
    how close it is to the torch model). Load it with ``DSEModel.load(path, backend="onnx")``.
    """
    check_options("onnx", quantize, opset)
    out = _target(out_dir, model_or_path)
    model, source = _source(model_or_path)
    started = time.perf_counter()
    with atomic_dir(out) as tmp:
        info = _write_export(model, tmp, opset, source)
        if quantize == "int8":
            info["encoder"]["int8"] = quantize_encoder(tmp / ONNX_ENCODER, tmp / ONNX_ENCODER_INT8, per_channel)
        atomic_write_json(tmp / ONNX_INFO, info)
        info["parity"] = _verify(model, tmp, info)
        info["export_seconds"] = round(time.perf_counter() - started, 2)
        atomic_write_json(tmp / ONNX_INFO, info)
    if out.parent.joinpath(STUDENT_CONFIG).is_file() and out.name == ONNX_DIR:
        update_model_card(out.parent)  # the student's card now tells how to load the export
    return out


def _source(model_or_path: Any) -> tuple[DSEModel, dict[str, Any]]:
    """The torch student on the CPU, and what the record says about where it came from."""
    from ..retrieval import model_fingerprint

    if isinstance(model_or_path, OnnxDSEModel):
        raise ConfigError("this student already runs on the onnx backend; export its torch folder instead")
    if isinstance(model_or_path, DSEModel):
        model = model_or_path if model_or_path.device.type == "cpu" else copy.deepcopy(model_or_path).cpu()
        source: dict[str, Any] = {"path": None, "files_sha256": {}}
    elif isinstance(model_or_path, (str, os.PathLike)):
        path = Path(model_or_path)
        model = DSEModel.load(path, device="cpu")  # a folder that is not a student fails here, in one line
        files = {name: file_sha256(path / name) for name in (WEIGHTS, STUDENT_HEAD) if (path / name).is_file()}
        source = {"path": str(path.resolve()), "files_sha256": files}
    else:
        raise ConfigError(f"export_onnx needs a DSEModel or a student folder, not {type(model_or_path).__name__}")
    model.eval()
    source["fingerprint"] = model_fingerprint(model)
    source["base_model"] = model.config.base_model
    return model, source


def _target(out_dir: Any, model_or_path: Any) -> Path:
    """Where the export goes; never over a folder that holds something other than an earlier export."""
    if out_dir is None and not isinstance(model_or_path, (str, os.PathLike)):
        raise ConfigError("an in-memory student has no folder to export into: pass out_dir")
    out = Path(model_or_path) / ONNX_DIR if out_dir is None else Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / ONNX_INFO).is_file())):
        raise ConfigError(f"refusing to replace {out}: it exists and is not an earlier dsembed ONNX export")
    if (out / ST_MODULES).is_file():
        raise ConfigError(f"refusing to replace {out}: it is a model folder; export into a folder of its own")
    return out


def _write_export(model: DSEModel, tmp: Path, opset: int, source: dict[str, Any]) -> dict[str, Any]:
    """Both graphs, the tokenizer, config and head weights; the record of what was written."""
    import onnx
    import onnxruntime

    names = _export_encoder(model, tmp / ONNX_ENCODER, opset)
    _export_head(model, tmp / ONNX_HEAD, opset)
    model.encoder[0].tokenizer.save_pretrained(str(tmp))
    (tmp / STUDENT_CONFIG).write_text(json.dumps(asdict(model.config), indent=2, default=str))
    save_file({k: v.detach().cpu().contiguous() for k, v in model.head.state_dict().items()}, str(tmp / STUDENT_HEAD))
    return {
        "format": "onnx", "format_version": FORMAT_VERSION, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "task": model.task.name, "kind": model.task.kind, "outputs": model.task.student_outputs,
        "pooling": model.config.pooling, "top_k": model.config.top_k if model.config.pooling == "topk" else None,
        "embedding_dim": model.embedding_dim, "head_hidden": model.config.head_hidden,
        "max_seq_length": model.encoder.max_seq_length, "inputs": list(names),
        "graph_outputs": {"encoder": "sentence_embedding [batch, embedding_dim]", "head": "logits [batch, outputs]"},
        "dynamic_axes": {"batch": "every input and output", "sequence": "every encoder input"},
        "opset": opset, "exporter": "torch.onnx.export (TorchScript, dynamo=False)",
        "encoder": {"fp32": {"file": ONNX_ENCODER, "sha256": file_sha256(tmp / ONNX_ENCODER)}},
        "head": {"file": ONNX_HEAD, "sha256": file_sha256(tmp / ONNX_HEAD), "precision": "fp32",
                 "inputs": ["u", "v"]},
        "files": {STUDENT_HEAD: sha256_bytes((tmp / STUDENT_HEAD).read_bytes())},
        "source": source,
        "versions": {"dsembed": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
                     "onnxruntime": onnxruntime.__version__},
    }


def _export_encoder(model: DSEModel, file: Path, opset: int) -> tuple[str, ...]:
    """Trace tokens -> transformer -> pooling into ``file``; returns the graph's input names."""
    dummy = model.tokenize(PROBE[:2])  # two lengths: the trace sees a real padding mask
    names = tuple(n for n in INPUT_NAMES if n in dummy)
    axes = {n: {0: "batch", 1: "sequence"} for n in names} | {"sentence_embedding": {0: "batch"}}
    _torch_export(_EncoderGraph(model.encoder, names), tuple(dummy[n] for n in names), file, names,
                  ("sentence_embedding",), axes, opset)
    _pin_output_width(file, model.embedding_dim)
    return names


def _pin_output_width(file: Path, width: int) -> None:
    """Write the embedding width into the graph's output shape (the tracer leaves it symbolic after a Concat)."""
    import onnx

    graph = onnx.load(str(file))
    dim = graph.graph.output[0].type.tensor_type.shape.dim[1]
    if dim.dim_value != width:
        dim.Clear()
        dim.dim_value = width
        onnx.save(graph, str(file))


def _export_head(model: DSEModel, file: Path, opset: int) -> None:
    gen = torch.Generator().manual_seed(0)
    u, v = (torch.randn(2, model.embedding_dim, generator=gen) for _ in range(2))
    axes = {"u": {0: "batch"}, "v": {0: "batch"}, "logits": {0: "batch"}}
    _torch_export(_HeadGraph(model.head), (u, v), file, ("u", "v"), ("logits",), axes, opset)


def _torch_export(module: nn.Module, args: tuple[Tensor, ...], file: Path, inputs: tuple[str, ...],
                  outputs: tuple[str, ...], axes: dict[str, dict[int, str]], opset: int) -> None:
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    module.eval()
    with torch.no_grad(), warnings.catch_warnings():
        # TracerWarnings on shape checks that hold for every input, and the exporter's deprecation notice;
        # whether the graph generalises is checked on other batch sizes and lengths by _verify.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, str(file), input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes=axes, opset_version=opset, do_constant_folding=True, **legacy)


def _verify(model: DSEModel, folder: Path, info: dict[str, Any]) -> dict[str, Any]:
    """Each variant against the torch model on the probe sentences; an fp32 graph that differs is refused."""
    pairs = [(a, b) for a in PROBE for b in PROBE if a != b]
    parity = {}
    for variant in info["encoder"]:
        onnx_model = load_onnx_student(folder, quantized=variant == "int8", intra_op_num_threads=1)
        parity[variant] = compare_models(model, onnx_model, PROBE, pairs, batch_size=3)
    worst = parity["fp32"]["max_abs_embedding_diff"]
    if not worst <= FP32_TOLERANCE:
        raise ConfigError(f"the exported fp32 encoder differs from the torch model by {worst:.3g} (> "
                          f"{FP32_TOLERANCE:g}) on the probe sentences: this encoder does not trace faithfully")
    return parity

