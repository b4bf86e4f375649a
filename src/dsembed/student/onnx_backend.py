"""The ``onnx`` backend: a student whose ``encode`` and head run in onnxruntime, with no torch forward pass.

:func:`load_onnx_student` reads a folder written by :func:`dsembed.export.export_onnx` (``onnx/`` inside the
student, or anywhere): the tokenizer files, one graph for the encoder *with* its pooling, one for the head,
``dse_config.json`` and ``dse_head.safetensors`` (the store's :class:`~dsembed.student.head.HeadScorer` reads
the head weights; the graphs never need them). Nothing in the folder is executed: no ``trust_remote_code``.

:class:`OnnxEncoder` stands where the ``SentenceTransformer`` sits in a torch student and has its ``encode``
signature, so every caller of :meth:`DSEModel.encode` / :meth:`DSEModel.predict` works unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor
from tqdm.auto import trange

from ..artifacts import ONNX_DIR, ONNX_INFO, STUDENT_CONFIG, STUDENT_HEAD
from ..errors import ConfigError, CorruptFileError, InputNotFoundError
from ..utils import sha256_bytes
from .head import PairHead
from .model import DSEConfig, DSEModel, _task_from_dict

FORMAT_VERSION = 1
VARIANTS = ("fp32", "int8")
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")  # the order the encoder graph takes them in


def _ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:  # an optional extra
        raise ConfigError("the onnx backend needs onnxruntime: pip install 'dsembed[onnx]'") from exc
    return onnxruntime


def resolve_export(path: str | Path) -> Path:
    """The export folder for ``path``: the folder itself, or the ``onnx/`` export inside a student folder."""
    path = Path(path)
    if (path / ONNX_INFO).is_file():
        return path
    if (path / ONNX_DIR / ONNX_INFO).is_file():
        return path / ONNX_DIR
    if (path / STUDENT_CONFIG).is_file():
        raise InputNotFoundError(f"{path} has no ONNX export yet: run `dsembed export {path} --format onnx` "
                                 "(add --quantize int8 for the int8 graph)")
    raise InputNotFoundError(f"{path} is neither a dsembed student nor an ONNX export ({ONNX_INFO} is missing)")


def read_info(folder: Path) -> dict[str, Any]:
    """The export's ``dsembed_onnx.json``, checked for the fields this reader relies on."""
    try:
        info = json.loads((folder / ONNX_INFO).read_text())
    except (OSError, ValueError) as exc:
        raise CorruptFileError(f"{folder / ONNX_INFO}: not readable JSON ({exc})") from exc
    if not isinstance(info, dict) or info.get("format") != "onnx" or info.get("format_version") != FORMAT_VERSION:
        raise CorruptFileError(f"{folder / ONNX_INFO} is not a dsembed ONNX export of format version "
                               f"{FORMAT_VERSION}; re-export the student")
    return info


def check_fresh(folder: Path, info: dict[str, Any]) -> None:
    """Refuse an export whose head copy was changed, or that a retrained student beside it has outgrown.

    The head graph and ``dse_head.safetensors`` must be the same head (``predict`` uses one, the store's
    scorer the other); an export inside a student folder must come from that folder's current weights.
    """
    head_file = folder / STUDENT_HEAD
    if not head_file.is_file() or sha256_bytes(head_file.read_bytes()) != info["files"][STUDENT_HEAD]:
        raise CorruptFileError(f"{head_file} is missing or is not the head this export was made with; re-export")
    parent, source = folder.parent, info.get("source", {}).get("files_sha256") or {}
    if folder.name != ONNX_DIR or not (parent / STUDENT_CONFIG).is_file():
        return
    for name, digest in source.items():
        file = parent / name
        if not file.is_file() or file_sha256(file) != digest:
            raise CorruptFileError(f"{folder} was exported from other weights than {parent} holds now ({name} "
                                   f"differs): re-run `dsembed export {parent} --format onnx`")


def file_sha256(path: Path) -> str:
    """sha256 of a file, read in 1 MiB chunks (graphs and weights are large)."""
    import hashlib

    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_session(path: Path, threads: int | None = None, providers: list[Any] | None = None) -> Any:
    """A CPU onnxruntime session on ``threads`` intra-op threads (default: torch's thread count)."""
    ort = _ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads or torch.get_num_threads())
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (untyped) errors for a missing or damaged graph
        raise CorruptFileError(f"{path}: onnxruntime cannot load this graph ({str(exc).splitlines()[0]})") from exc


class OnnxEncoder:
    """Tokenizer + one onnxruntime session: sentences -> sentence embeddings, as the torch encoder makes them."""

    device = torch.device("cpu")

    def __init__(self, folder: Path, info: dict[str, Any], variant: str, threads: int | None = None,
                 providers: list[Any] | None = None) -> None:
        from transformers import AutoTokenizer

        self.folder = folder
        self.variant = variant
        self.graph = info["encoder"][variant]
        self.session = make_session(folder / self.graph["file"], threads, providers)
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        self.max_seq_length: int | None = info["max_seq_length"]
        self.input_names = tuple(info["inputs"])
        self.dim = int(info["embedding_dim"])
        identity = {"onnx.encoder.sha256": self.graph["sha256"],
                    "onnx.source.fingerprint": info.get("source", {}).get("fingerprint", "")}
        self._identity = {k: torch.frombuffer(bytearray(v.encode()), dtype=torch.uint8) for k, v in identity.items()}

    def features(self, texts: list[str]) -> dict[str, np.ndarray]:
        """The graph's int64 inputs for ``texts``: padded to the longest, truncated at ``max_seq_length``."""
        enc = self.tokenizer(texts, padding=True, truncation="longest_first", max_length=self.max_seq_length,
                             return_tensors="np")
        return {name: np.asarray(enc[name], dtype=np.int64) for name in self.input_names}

    def encode(self, sentences: str | list[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               normalize_embeddings: bool = False, convert_to_numpy: bool = True,
               convert_to_tensor: bool = False) -> np.ndarray | Tensor:
        """``SentenceTransformer.encode``'s contract: longest sentences first in batches, rows in input order."""
        single = isinstance(sentences, str)
        texts = [sentences] if single else list(sentences)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts])  # as sentence-transformers sorts: same batches, same padding
        for start in trange(0, len(texts), batch_size, desc="Batches", disable=not show_progress_bar):
            rows = order[start:start + batch_size]
            out[rows] = self.session.run(None, self.features([texts[i] for i in rows]))[0]
        if normalize_embeddings:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        result = out[0] if single else out
        return torch.from_numpy(result) if convert_to_tensor else result

    def state_dict(self) -> dict[str, Tensor]:
        """What identifies this encoder for a store's fingerprint: its graph's sha256 and its source student.

        A store built with one backend/variant is thus never silently queried with another (int8 embeddings
        differ from fp32 ones by more than rounding).
        """
        return dict(self._identity)  # the same tensors every time, so the fingerprint's cache holds

    def get_embedding_dimension(self) -> int:
        return self.dim

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise _inference_only()

    preprocess = __call__


class OnnxDSEModel(DSEModel):
    """A :class:`DSEModel` whose encoder and head logits run in onnxruntime; the torch head is kept for scorers."""

    backend = "onnx"

    def __init__(self, encoder: OnnxEncoder, head: PairHead, head_session: Any, config: DSEConfig) -> None:
        super().__init__(encoder, head, _task_from_dict(config.task), config)  # type: ignore[arg-type]
        self.head_session = head_session
        self.variant = encoder.variant
        self.eval()

    def head_logits(self, u: np.ndarray | Tensor, v: np.ndarray | Tensor, batch_size: int = 65536) -> np.ndarray:
        """Head logits from the head graph, broadcasting a single ``u`` (or ``v``) against many rows."""
        uu, vv = _rows(u), _rows(v)
        n = max(len(uu), len(vv))
        chunks = []
        for start in range(0, n, batch_size):
            a = uu if len(uu) == 1 else uu[start:start + batch_size]
            b = vv if len(vv) == 1 else vv[start:start + batch_size]
            a, b = np.broadcast_arrays(a, b) if len(a) != len(b) else (a, b)
            chunks.append(self.head_session.run(None, {"u": np.ascontiguousarray(a), "v": np.ascontiguousarray(b)})[0])
        return np.concatenate(chunks) if chunks else np.zeros((0, self.task.student_outputs), dtype=np.float32)

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        raise _inference_only()

    def embed(self, features: dict[str, Tensor]) -> Tensor:
        raise _inference_only()

    def forward(self, *args: Any, **kwargs: Any) -> dict[str, Tensor]:
        raise _inference_only()

    def save(self, path: str | Path) -> None:
        raise ConfigError("an onnx-backed student cannot be saved as a torch student; copy its export folder")


def _inference_only() -> ConfigError:
    return ConfigError("an onnx-backed student is for inference only; load it with backend='torch' to train")


def _rows(x: np.ndarray | Tensor) -> np.ndarray:
    arr = x.detach().cpu().float().numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float32)
    return arr[None, :] if arr.ndim == 1 else arr


def onnx_providers(device: str | None) -> list[Any]:
    """onnxruntime's providers for a ``--device``: the CPU's, or CUDA's where this onnxruntime has it.

    ``None`` and ``auto`` keep the CPU (the export's parity was checked there); a GPU named outright needs
    onnxruntime-gpu, so a plain onnxruntime asked for one is a one-line error rather than a silent CPU run.
    """
    from ..utils import resolve_device

    if device is None or str(device).strip().lower() == "auto" or resolve_device(device).type == "cpu":
        return ["CPUExecutionProvider"]
    target = resolve_device(device)
    if "CUDAExecutionProvider" not in _ort().get_available_providers():
        raise ConfigError(f"the onnx backend runs on {device!r} only with onnxruntime's CUDA provider "
                          "(pip install onnxruntime-gpu); this onnxruntime has "
                          f"{', '.join(_ort().get_available_providers())}: use --device cpu or --backend torch")
    return [("CUDAExecutionProvider", {"device_id": target.index or 0}), "CPUExecutionProvider"]


def load_onnx_student(path: str | Path, device: str | None = None, quantized: bool = False,
                      intra_op_num_threads: int | None = None) -> OnnxDSEModel:
    """The student exported to ``path`` (an export folder, or a student folder with ``onnx/`` inside)."""
    providers = onnx_providers(device)
    folder = resolve_export(path)
    info = read_info(folder)
    variant = "int8" if quantized else "fp32"
    if variant not in info["encoder"]:
        raise InputNotFoundError(f"{folder} has no {variant} encoder graph: run `dsembed export "
                                 f"{folder.parent if folder.name == ONNX_DIR else path} --format onnx --quantize int8`")
    check_fresh(folder, info)
    config = DSEConfig(**json.loads((folder / STUDENT_CONFIG).read_text()))
    task = _task_from_dict(config.task)
    head = PairHead(config.embedding_dim, config.head_hidden, task.student_outputs, config.head_dropout)
    head.load_state_dict(load_file(str(folder / STUDENT_HEAD)))
    encoder = OnnxEncoder(folder, info, variant, intra_op_num_threads, providers)
    head_session = make_session(folder / info["head"]["file"], intra_op_num_threads, providers)
    return OnnxDSEModel(encoder, head, head_session, config)


__all__ = ["INPUT_NAMES", "VARIANTS", "OnnxDSEModel", "OnnxEncoder", "check_fresh", "file_sha256", "load_onnx_student",
           "make_session", "read_info", "resolve_export"]
