"""The DSE student: one shared sentence encoder plus a small head over the two embeddings.

The encoder is a ``SentenceTransformer`` (Transformer module + pooling module), so encoding,
batching and saving are sentence-transformers' own and a saved student loads there as a plain
embedding model. The head and the DSE config are stored beside it in the same folder.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
from torch import Tensor, nn

from .. import __version__
from ..artifacts import HF_CONFIG, ONNX_INFO, POOLING_CODE, ST_MODULES, STUDENT_CONFIG, STUDENT_HEAD
from ..config import POOLINGS
from ..errors import ConfigError, InputNotFoundError, UnsafeModelError
from ..tasks import TaskSpec
from ..utils import atomic_dir, default_device, resolve_device, sha256_bytes
from .card import update_model_card
from .head import PairHead
from .loss import DSELoss, logits_to_scores
from .pooling import LayerConcatMeanPooling

POOLING_CLASS_REF = "dsembed_pooling.LayerConcatMeanPooling"


def _task_from_dict(data: dict[str, Any]) -> TaskSpec:
    tuple_keys = {"labels", "metrics", "hf_columns", "label_range"}
    kwargs = {k: (tuple(v) if k in tuple_keys and v is not None else v) for k, v in data.items()}
    return TaskSpec(**kwargs)


@dataclass
class DSEConfig:
    """Everything needed to rebuild the student around its saved encoder."""

    task: dict[str, Any]
    pooling: str = "topk"
    top_k: int = 4
    head_hidden: int = 512
    head_dropout: float = 0.0
    embedding_dim: int = 0
    base_model: str = ""
    dsembed_version: str = __version__
    training: dict[str, Any] = field(default_factory=dict)


def _normalise_pooling(pooling: str, top_k: int) -> tuple[str, int]:
    pooling = pooling.lower()
    if pooling not in POOLINGS:
        raise ConfigError(f"unknown pooling {pooling!r}; choose one of {', '.join(POOLINGS)}")
    if pooling == "top4":
        return "topk", 4
    return pooling, top_k


def build_encoder(base: str, pooling: str = "topk", top_k: int = 4, max_seq_length: int | None = 128,
                  device: str | None = None) -> SentenceTransformer:
    """A fresh SentenceTransformer over a pretrained HF encoder with the chosen DSE pooling."""
    from ..bases import explained_load_errors, resolve_model_path

    pooling, top_k = _normalise_pooling(pooling, top_k)
    path = resolve_model_path(base)
    config_kwargs = {"output_hidden_states": True} if pooling == "topk" else None
    with explained_load_errors("student base", base):
        transformer = Transformer(path, max_seq_length=max_seq_length, config_kwargs=config_kwargs)
    dim = transformer.get_embedding_dimension()
    if pooling == "topk":
        layers = transformer.model.config.num_hidden_layers
        if not 1 <= top_k <= layers:
            raise ConfigError(f"top_k={top_k} but the encoder has {layers} layers")
        pool: nn.Module = LayerConcatMeanPooling(dim, top_k=top_k)
    else:
        pool = Pooling(dim, pooling_mode="mean" if pooling == "mean" else "cls")
    return SentenceTransformer(modules=[transformer, pool], device=device or default_device())


class DSEModel(nn.Module):
    """Siamese student: ``encode`` sentences once, then score any pair with the cheap head."""

    def __init__(self, encoder: SentenceTransformer, head: PairHead, task: TaskSpec, config: DSEConfig,
                 alpha: float = 0.5) -> None:
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.task = task
        self.config = config
        self.loss_fn = DSELoss(task, alpha)
        self.head.to(encoder.device)

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def from_base(cls, base: str, task: TaskSpec, *, pooling: str = "topk", top_k: int = 4, head_hidden: int = 512,
                  head_dropout: float = 0.0, max_seq_length: int | None = None, alpha: float = 0.5,
                  device: str | None = None, seed: int | None = 0) -> DSEModel:
        """Start a student from a pretrained encoder (an offline alias, HF id or local folder)."""
        pooling, top_k = _normalise_pooling(pooling, top_k)
        if seed is not None:
            torch.manual_seed(seed)
        encoder = build_encoder(base, pooling, top_k, max_seq_length or task.max_length, device)
        dim = encoder.get_embedding_dimension()
        head = PairHead(dim, head_hidden, task.student_outputs, head_dropout)
        config = DSEConfig(task=asdict(task), pooling=pooling, top_k=top_k, head_hidden=head_hidden,
                           head_dropout=head_dropout, embedding_dim=dim, base_model=base)
        return cls(encoder, head, task, config, alpha=alpha)

    @classmethod
    def load(cls, path: str | Path, device: str | None = None, trust_remote_code: bool = False, *,
             backend: str = "torch", quantized: bool = False, intra_op_num_threads: int | None = None) -> DSEModel:
        """Load a student saved by :meth:`save` (safetensors only).

        ``device``: ``auto`` or None (a GPU if there is one), ``cpu``, ``cuda``, ``cuda:N``; a GPU this machine
        lacks is a one-line :class:`~dsembed.errors.ConfigError`. ``backend="onnx"`` runs the student's ONNX export
        (``dsembed export``) in onnxruntime instead: the int8 graph with ``quantized=True``, on
        ``intra_op_num_threads`` threads (default: torch's count).
        """
        if backend == "onnx":
            from .onnx_backend import load_onnx_student

            return load_onnx_student(path, device, quantized=quantized, intra_op_num_threads=intra_op_num_threads)
        device = str(resolve_device(device))  # before any file is read: a missing GPU is the first thing said
        _check_torch_backend(Path(path), backend, quantized)
        path = Path(path)
        config_path = path / STUDENT_CONFIG
        if not config_path.is_file():
            raise InputNotFoundError(f"{path} is not a dsembed student: {STUDENT_CONFIG} is missing")
        config = DSEConfig(**json.loads(config_path.read_text()))
        needs_code = _check_folder_code(path, trust_remote_code)
        encoder = SentenceTransformer(str(path), device=device,
                                      trust_remote_code=needs_code or trust_remote_code, local_files_only=True)
        task = _task_from_dict(config.task)
        head = PairHead(config.embedding_dim, config.head_hidden, task.student_outputs, config.head_dropout)
        head.load_state_dict(load_file(str(path / STUDENT_HEAD)))
        model = cls(encoder, head, task, config)
        model.eval()
        return model

    def save(self, path: str | Path) -> None:
        """Write encoder (sentence-transformers layout), head and config; atomically."""
        with atomic_dir(path) as tmp:
            self.encoder.save(str(tmp))
            if self.config.pooling == "topk":
                (tmp / POOLING_CODE).write_bytes(_pooling_source())
                modules_path = tmp / ST_MODULES
                modules = json.loads(modules_path.read_text())
                for module in modules:
                    if module["type"].endswith("LayerConcatMeanPooling"):
                        module["type"] = POOLING_CLASS_REF
                modules_path.write_text(json.dumps(modules, indent=2))
            state = {k: v.detach().cpu().contiguous() for k, v in self.head.state_dict().items()}
            save_file(state, str(tmp / STUDENT_HEAD))
            (tmp / STUDENT_CONFIG).write_text(json.dumps(asdict(self.config), indent=2, default=str))
            update_model_card(tmp)  # replaces sentence-transformers' stock card with one that says what this is

    # ---- training forward ---------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.encoder.device

    @property
    def embedding_dim(self) -> int:
        return self.config.embedding_dim

    def tokenize(self, texts: list[str]) -> dict[str, Tensor]:
        return self.encoder.preprocess(texts)

    def embed(self, features: dict[str, Tensor]) -> Tensor:
        """Differentiable sentence embeddings of tokenised features."""
        return self.encoder(dict(features))["sentence_embedding"]

    def forward(self, sentence_a: dict[str, Tensor], sentence_b: dict[str, Tensor], labels: Tensor | None = None,
                teacher_logits: Tensor | None = None, label_mask: Tensor | None = None) -> dict[str, Tensor]:
        u = self.embed(sentence_a)
        v = self.embed(sentence_b)
        logits = self.head(u, v)
        out: dict[str, Tensor] = {"logits": logits}
        if labels is not None or teacher_logits is not None:
            parts = self.loss_fn(logits, labels, teacher_logits, label_mask)
            out["loss"] = parts.pop("loss")
            # kept aside (not returned) so the Trainer's prediction loop sees only loss and logits
            self.last_loss_parts = {k: float(v.detach()) for k, v in parts.items()}
        return out

    # ---- inference ----------------------------------------------------------------------
    def encode(self, sentences: str | list[str], batch_size: int = 32, show_progress_bar: bool | None = None,
               normalize_embeddings: bool = False, convert_to_numpy: bool = True,
               convert_to_tensor: bool = False) -> np.ndarray | Tensor:
        """Sentence embeddings, exactly as ``SentenceTransformer.encode`` computes them."""
        return self.encoder.encode(sentences, batch_size=batch_size, show_progress_bar=show_progress_bar,
                                   normalize_embeddings=normalize_embeddings, convert_to_numpy=convert_to_numpy,
                                   convert_to_tensor=convert_to_tensor)

    @torch.inference_mode()
    def head_logits(self, u: np.ndarray | Tensor, v: np.ndarray | Tensor, batch_size: int = 65536) -> np.ndarray:
        """Head logits for aligned rows of embeddings (broadcasts a single ``u`` against many ``v``)."""
        u_t = torch.as_tensor(np.asarray(u, dtype=np.float32) if not isinstance(u, Tensor) else u)
        v_t = torch.as_tensor(np.asarray(v, dtype=np.float32) if not isinstance(v, Tensor) else v)
        u_t, v_t = u_t.to(self.device, torch.float32), v_t.to(self.device, torch.float32)
        if u_t.ndim == 1:
            u_t = u_t.unsqueeze(0)
        if v_t.ndim == 1:
            v_t = v_t.unsqueeze(0)
        n = max(len(u_t), len(v_t))
        self.head.eval()
        chunks = []
        for start in range(0, n, batch_size):
            uu = u_t if len(u_t) == 1 else u_t[start:start + batch_size]
            vv = v_t if len(v_t) == 1 else v_t[start:start + batch_size]
            if len(uu) == 1 and len(vv) > 1:
                uu = uu.expand(len(vv), -1)
            elif len(vv) == 1 and len(uu) > 1:
                vv = vv.expand(len(uu), -1)
            chunks.append(self.head(uu, vv).float().cpu())
        return torch.cat(chunks).numpy()

    def scores_from_logits(self, logits: np.ndarray) -> np.ndarray:
        return logits_to_scores(self.task, torch.as_tensor(logits)).numpy()

    def predict(self, pairs: list[tuple[str, str]] | list[list[str]], batch_size: int = 32,
                show_progress_bar: bool | None = None, apply_activation: bool = True) -> np.ndarray:
        """Scores for sentence pairs, like ``CrossEncoder.predict``; each distinct sentence is encoded once."""
        if not pairs:
            return np.zeros((0,), dtype=np.float32)
        unique: dict[str, int] = {}
        for a, b in pairs:
            unique.setdefault(a, len(unique))
            unique.setdefault(b, len(unique))
        emb = self.encode(list(unique), batch_size=batch_size, show_progress_bar=show_progress_bar)
        ia = np.fromiter((unique[a] for a, _ in pairs), dtype=np.int64, count=len(pairs))
        ib = np.fromiter((unique[b] for _, b in pairs), dtype=np.int64, count=len(pairs))
        logits = self.head_logits(emb[ia], emb[ib])
        return self.scores_from_logits(logits) if apply_activation else logits


def _check_torch_backend(path: Path, backend: str, quantized: bool) -> None:
    """Refuse what only the onnx backend can load, before sentence-transformers fails on it less clearly."""
    if backend != "torch":
        raise ConfigError(f"unknown backend {backend!r}; choose torch or onnx")
    if quantized:
        raise ConfigError("quantized=True needs backend='onnx' (the int8 graph of `dsembed export --quantize int8`)")
    if (path / ONNX_INFO).is_file() and not (path / ST_MODULES).is_file():
        raise InputNotFoundError(f"{path} is an ONNX export, not a torch student: load it with backend='onnx'")


def _check_folder_code(path: Path, trust_remote_code: bool) -> bool:
    """Refuse folders that would make us run code other than dsembed's own pooling module.

    Returns whether the folder needs that pooling module (and so ``trust_remote_code`` for
    sentence-transformers, which is then safe because we checked every module type).
    """
    modules_file = path / ST_MODULES
    types = [m.get("type", "") for m in json.loads(modules_file.read_text())] if modules_file.is_file() else []
    needs_code = POOLING_CLASS_REF in types
    if trust_remote_code:
        return needs_code
    foreign = [t for t in types if not t.startswith("sentence_transformers.") and t != POOLING_CLASS_REF]
    if foreign:
        raise UnsafeModelError(f"{modules_file} names module types that are not dsembed's or sentence-transformers' "
                         f"({', '.join(foreign)}); pass trust_remote_code=True only if you trust this folder")
    config_file = path / HF_CONFIG
    if config_file.is_file() and "auto_map" in json.loads(config_file.read_text()):
        raise UnsafeModelError(f"{config_file} asks for custom model code (auto_map); pass trust_remote_code=True only "
                         "if you trust this folder")
    if needs_code:
        code_file = path / POOLING_CODE
        if not code_file.is_file() or sha256_bytes(code_file.read_bytes()) != sha256_bytes(_pooling_source()):
            raise UnsafeModelError(f"{code_file} is missing or differs from dsembed's pooling code; pass "
                             "trust_remote_code=True only if you trust this folder")
    return needs_code


def _pooling_source() -> bytes:
    return (Path(__file__).parent / "pooling.py").read_bytes()
