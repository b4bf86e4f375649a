"""The FAISS prefilter: an inner-product index over a store, ``cosine`` or ``head`` (the head surrogate).

An index only proposes candidates; :func:`dsembed.retrieval.rank` re-ranks them with the exact head. Its
files live in the store folder beside the rows (:meth:`CandidateStore.ann_files`) and remember how many
rows they hold, so rows added to the store later are appended on the next :func:`load_ann`.
"""

from __future__ import annotations

import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm.auto import tqdm

from ..errors import ConfigError, ModelMismatchError, StoreError
from ..student.head import HeadScorer
from ..utils import atomic_write_json
from .manifest import REBUILD_ANN, damaged, read_json
from .scoring import ranking_key, resolve_label, scorer_for
from .store import PREFILTER_KINDS, CandidateStore

if TYPE_CHECKING:  # pragma: no cover
    from ..student.model import DSEModel


def auto_factory(n: int) -> str:
    """Exact inner product up to 50k rows; IVF (about sqrt(N) lists) with 8-bit scalar quantisation above."""
    if n <= 50_000:
        return "Flat"
    nlist = int(2 ** round(math.log2(max(64.0, min(4096.0, math.sqrt(n))))))
    return f"IVF{nlist},SQ8"


def _normalised(x: np.ndarray) -> np.ndarray:
    x = np.array(x, dtype=np.float32, copy=True)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return x / norms


@dataclass
class HeadSurrogate:
    """A linear stand-in for the head, so that a plain inner-product index can prefilter by head score.

    With each hidden unit replaced by its activation rate ``m_h`` on high-scoring pairs (ReLU -> constant gate)
    and ``|x| ~ x^2 / (2 tau) + tau / 2`` per dimension, the logit becomes ``const(u) + D(v) + g(u) . v``:
    an inner product of ``phi(v) = [v, D(v)]`` with ``psi(u) = [g(u), 1]``. Unlike cosine, this keeps the
    head's candidate-only preferences (``D``) and its per-dimension weighting. An IVF index stores
    ``[phi, sqrt(R^2 - |phi|^2)]`` (every candidate on one sphere: the usual maximum-inner-product ->
    nearest-neighbour transform) and searches ``[psi, 0]``: lists are built and probed by L2 on the sphere
    (balanced lists), and scanned by inner product, where the extra coordinate meets the query's 0, so its
    8-bit code costs no precision. Only the prefilter uses the surrogate; returned scores come from the exact head.
    """

    r: np.ndarray  # [h] output weight x activation rate
    w3r: np.ndarray  # [d] r @ W3
    omega: np.ndarray  # [d] r @ (-2 W4)
    tau: np.ndarray  # [d] typical |u_j - v_j|
    radius: float = 0.0  # R (IVF only): the largest |phi(v)| when the index was built, with headroom

    def phi(self, emb: np.ndarray, proj: np.ndarray) -> np.ndarray:
        emb = np.asarray(emb, dtype=np.float32)
        d = np.asarray(proj, dtype=np.float32) @ self.r - (emb * emb) @ (self.omega / (4.0 * self.tau))
        return np.concatenate([emb, d[:, None].astype(np.float32)], axis=1)

    @staticmethod
    def width(columns: int) -> int:
        """Index width: zero-padded to a multiple of 16 (FAISS's SIMD scalar-quantizer kernels need it)."""
        return -(-columns // 16) * 16

    @classmethod
    def _pad(cls, x: np.ndarray) -> np.ndarray:
        extra = cls.width(x.shape[1]) - x.shape[1]
        return np.pad(x, ((0, 0), (0, extra))) if extra else x

    def candidate_vectors(self, emb: np.ndarray, proj: np.ndarray) -> np.ndarray:
        """``phi`` (Flat index), or ``[phi, sqrt(R^2 - |phi|^2)]`` once a radius is set (IVF index); padded."""
        phi = self.phi(emb, proj)
        return self._pad(self.augment(phi) if self.radius > 0 else phi)

    def augment(self, phi: np.ndarray) -> np.ndarray:
        """``[phi, sqrt(R^2 - |phi|^2)]``: every candidate on the sphere of radius R."""
        extra = np.sqrt(np.maximum(self.radius ** 2 - (phi.astype(np.float64) ** 2).sum(1), 0.0))
        return np.concatenate([phi, extra[:, None].astype(np.float32)], axis=1)

    def query_vectors(self, u: np.ndarray) -> np.ndarray:
        u = np.asarray(u, dtype=np.float32)
        g = u * self.w3r + 0.5 * self.omega * (1.0 + u / self.tau)
        pad = np.zeros((len(u), 2 if self.radius > 0 else 1), dtype=np.float32)
        pad[:, 0] = 1.0
        return self._pad(np.concatenate([g, pad], axis=1).astype(np.float32))

    def save(self, path: Path) -> None:
        tmp = path.with_name(f".{path.name}.tmp.npz")
        np.savez(tmp, r=self.r, w3r=self.w3r, omega=self.omega, tau=self.tau, radius=np.float64(self.radius))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> HeadSurrogate:
        try:
            with np.load(path) as data:
                return cls(**{k: data[k] for k in ("r", "w3r", "omega", "tau")}, radius=float(data["radius"]))
        except (OSError, ValueError, KeyError, EOFError) as exc:  # zipfile.BadZipFile is an OSError
            raise damaged(path, f"cannot read the head surrogate ({exc})", REBUILD_ANN) from None


@torch.inference_mode()
def fit_surrogate(scorer: HeadScorer, store: CandidateStore, *, kind: str = "binary", label: int = 0,
                  queries: int = 32, candidates: int = 2048, top_fraction: float = 0.05,
                  seed: int = 0) -> HeadSurrogate:
    """Fit :class:`HeadSurrogate` on store rows used as sample queries against a sample of candidates."""
    rng = np.random.default_rng(seed)
    n = store.count
    q_rows = np.sort(rng.choice(n, size=min(n, queries), replace=False))
    c_rows = np.sort(rng.choice(n, size=min(n, candidates), replace=False))
    u, _ = store.rows(q_rows)
    v, proj = store.rows(c_rows)
    ut, vt, pt = torch.from_numpy(u), torch.from_numpy(v), torch.from_numpy(proj)
    a = ut @ scorer.q_lin_t
    active = torch.zeros(scorer.hidden)
    weights = torch.zeros(scorer.outputs)
    tau = torch.zeros(scorer.dim)
    counted = 0
    for q in range(len(u)):
        z = pt + a[q] + vt @ (scorer.w3 * ut[q]).t() + torch.minimum(vt, ut[q]) @ scorer.w4n_t
        logits = torch.addmm(scorer.out_b, z.clamp_min(0.0), scorer.out_w_t)
        key = ranking_key(logits, kind, label)
        top = torch.topk(key, max(1, int(top_fraction * len(key)))).indices
        active += (z[top] > 0).float().sum(0)
        if kind == "multiclass":
            weights += torch.softmax(logits[top], dim=-1).sum(0)
        counted += len(top)
        tau += (vt - ut[q]).abs().mean(0)
    rate = active / max(counted, 1)
    out_w = scorer.out_w_t  # h x k
    if kind == "multiclass":  # d log p_c = d logit_c - sum_k p_k d logit_k
        p = weights / max(counted, 1)
        o = out_w[:, label] - out_w @ p
    else:
        o = out_w[:, 0]
    r = (o * rate).float()
    tau = (tau / len(u)).clamp_min(1e-4)
    return HeadSurrogate(r=r.numpy(), w3r=(r @ scorer.w3).numpy(), omega=(r @ scorer.w4n_t.t()).numpy(),
                         tau=tau.numpy())


class AnnIndex:
    """A FAISS inner-product index over the store: ``cosine`` (normalised embeddings) or ``head`` (surrogate)."""

    def __init__(self, index: Any, meta: dict[str, Any], surrogate: HeadSurrogate | None = None) -> None:
        self.index = index
        self.meta = meta
        self.surrogate = surrogate
        self._lock = threading.Lock()

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind", "cosine"))

    @property
    def count(self) -> int:
        return int(self.index.ntotal)

    def set_params(self, nprobe: int | None = None, ef_search: int | None = None) -> None:
        import faiss

        if nprobe is not None and "IVF" in self.meta["factory"]:
            faiss.extract_index_ivf(self.index).nprobe = int(nprobe)
        if ef_search is not None and "HNSW" in self.meta["factory"]:
            faiss.downcast_index(self.index).hnsw.efSearch = int(ef_search)

    def vectors(self, emb: np.ndarray, proj: np.ndarray | None = None) -> np.ndarray:
        """What the index stores for candidate rows."""
        if self.kind == "cosine":
            return _normalised(emb)
        assert self.surrogate is not None and proj is not None
        return self.surrogate.candidate_vectors(emb, proj)

    def add_rows(self, emb: np.ndarray, proj: np.ndarray) -> None:
        """Append candidate rows."""
        self.index.add(np.ascontiguousarray(self.vectors(emb, proj), dtype=np.float32))

    def search(self, u: np.ndarray, m: int, nprobe: int | None = None) -> np.ndarray:
        """Row ids ``[Q, m]`` of the top-``m`` candidates (-1 where fewer exist)."""
        if m < 1:
            raise ConfigError(f"prefilter size must be >= 1, got {m}")
        query = _normalised(u) if self.kind == "cosine" else self.surrogate.query_vectors(u)  # type: ignore[union-attr]
        with self._lock:  # nprobe is index state: keep concurrent searches from changing it under each other
            if nprobe is not None:
                self.set_params(nprobe=nprobe)
            _, idx = self.index.search(np.ascontiguousarray(query, dtype=np.float32), int(m))
            if nprobe is not None:
                self.set_params(nprobe=self.meta.get("nprobe"))
        return idx.astype(np.int64)

    def save(self, store: CandidateStore) -> None:
        import faiss

        file, meta_file, sur_file = store.ann_files(self.kind)
        tmp = file.with_name(f".{file.name}.tmp")
        faiss.write_index(self.index, str(tmp))
        if self.surrogate is not None:
            self.surrogate.save(sur_file)
        os.replace(tmp, file)
        self.meta["count"] = self.count
        atomic_write_json(meta_file, self.meta)


# --------------------------------------------------------------------------------------------------
# building
# --------------------------------------------------------------------------------------------------


def _surrogate_for(store: CandidateStore, kind: str, model: DSEModel | None,
                   label: int | str | None, seed: int) -> tuple[HeadSurrogate | None, int]:
    """(surrogate, label index) for an index of ``kind``: none for cosine, fitted to the model for head."""
    if kind == "cosine":
        return None, 0
    if kind != "head":
        raise ConfigError(f"{store.path}: prefilter kind must be one of {PREFILTER_KINDS}, got {kind!r}")
    if model is None:
        raise ConfigError(f"a head prefilter index needs the model (store {store.path})")
    store.check_model(model)
    lab = resolve_label(model.task, label)
    return fit_surrogate(scorer_for(model), store, kind=model.task.kind, label=lab, seed=seed), lab


def _ivf_lists(factory: str) -> int:
    """The number of inverted lists of an ``IVF<n>,...`` factory string (0 for any other index)."""
    if not factory.startswith("IVF"):
        return 0
    try:
        return int(factory.split(",")[0][3:])
    except ValueError:
        raise ConfigError(f"cannot read the number of IVF lists from the FAISS factory {factory!r}") from None


def _sphere_radius(store: CandidateStore, surrogate: HeadSurrogate, chunk_rows: int) -> float:
    """The sphere radius for the MIPS -> nearest-neighbour transform, with headroom for rows added later."""
    top = 0.0
    for lo in range(0, store.count, chunk_rows):
        hi = min(store.count, lo + chunk_rows)
        phi = surrogate.phi(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))
        top = max(top, float(np.sqrt((phi.astype(np.float64) ** 2).sum(1).max())))
    return 1.05 * top


def _head_ivf_index(factory: str, dim: int, nlist: int) -> Any:
    """An IVF index whose lists are built and probed by L2 on the sphere, scanned by inner product."""
    import faiss

    codec = factory.split(",", 1)[1] if "," in factory else "Flat"
    quantizer = faiss.IndexFlatL2(dim)
    qtypes = {"SQ8": faiss.ScalarQuantizer.QT_8bit, "SQfp16": faiss.ScalarQuantizer.QT_fp16,
              "SQ4": faiss.ScalarQuantizer.QT_4bit}
    if codec == "Flat":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    elif codec in qtypes:
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, qtypes[codec], faiss.METRIC_INNER_PRODUCT)
    else:
        raise ConfigError(f"the head prefilter supports Flat and IVF<n>,{{Flat,SQ8,SQfp16,SQ4}}, not {factory!r}")
    index.own_fields = True
    quantizer.this.disown()
    index.cp.niter = 10
    return index


def _new_index(factory: str, dim: int, kind: str, nlist: int) -> Any:
    """An empty, untrained FAISS inner-product index for ``factory``."""
    import faiss

    if kind == "head" and nlist:
        return _head_ivf_index(factory, dim, nlist)
    if kind == "head" and factory != "Flat":
        raise ConfigError(f"the head prefilter supports Flat and IVF indexes, not {factory!r}")
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:  # faiss's only signal for a factory string it cannot parse
        raise ConfigError(f"FAISS cannot build the index {factory!r}: {exc}") from None
    if nlist:
        faiss.extract_index_ivf(index).cp.niter = 10
    return index


def _train_and_fill(ann: AnnIndex, store: CandidateStore, sample: np.ndarray, chunk_rows: int,
                    show_progress_bar: bool) -> None:
    if not ann.index.is_trained:
        emb, proj = store.rows(sample)
        try:
            ann.index.train(np.ascontiguousarray(ann.vectors(emb, proj), dtype=np.float32))
        except RuntimeError as exc:  # e.g. fewer training rows than IVF lists
            raise StoreError(f"cannot train the FAISS index {ann.meta['factory']!r} on {len(sample)} rows of "
                             f"{store.path}: {exc}") from None
    n = store.count
    for lo in tqdm(range(0, n, chunk_rows), desc=f"ANN index ({ann.kind})", unit="chunk",
                   disable=not show_progress_bar):
        hi = min(n, lo + chunk_rows)
        ann.add_rows(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))


def build_ann(store: CandidateStore, factory: str = "auto", *, kind: str = "cosine", model: DSEModel | None = None,
              nprobe: int | None = None, label: int | str | None = None, train_size: int = 50_000,
              chunk_rows: int = 65_536, seed: int = 0, show_progress_bar: bool = True) -> AnnIndex:
    """Build and save a FAISS index over the store.

    ``factory``: ``auto``, ``Flat``, ``IVF1024,SQ8``, ``IVF1024,Flat``, ``HNSW32``... ``kind="cosine"`` indexes
    the normalised embeddings; ``kind="head"`` the :class:`HeadSurrogate` vectors (needs ``model``).
    """
    n = store.count
    if n == 0:
        raise StoreError(f"the store {store.path} is empty: nothing to index")
    factory = auto_factory(n) if factory == "auto" else factory
    start = time.perf_counter()
    surrogate, lab = _surrogate_for(store, kind, model, label, seed)
    nlist = _ivf_lists(factory)
    if surrogate is not None and nlist:
        surrogate.radius = _sphere_radius(store, surrogate, chunk_rows)
    dim = HeadSurrogate.width(store.dim + (2 if nlist else 1)) if kind == "head" else store.dim
    meta: dict[str, Any] = {"kind": kind, "factory": factory, "dim": dim, "model_fingerprint": store.fingerprint,
                            "metric": "inner_product", "label": lab}
    if nlist:
        meta["nprobe"] = nprobe or min(128, max(8, nlist // 32))
    rng = np.random.default_rng(seed)
    if nlist:  # ~40 points per list is enough for k-means
        train_size = min(train_size, max(40 * nlist, 10_000))
    sample = np.sort(rng.choice(n, size=min(n, train_size), replace=False))
    ann = AnnIndex(_new_index(factory, dim, kind, nlist), meta, surrogate)
    _train_and_fill(ann, store, sample, chunk_rows, show_progress_bar)
    meta["build_seconds"] = round(time.perf_counter() - start, 3)
    ann.set_params(nprobe=meta.get("nprobe"))
    ann.save(store)
    return ann


# --------------------------------------------------------------------------------------------------
# loading, keeping up with the store
# --------------------------------------------------------------------------------------------------


def has_ann(store: CandidateStore, kind: str = "cosine") -> bool:
    return store.ann_files(kind)[0].is_file()


def load_ann(store: CandidateStore, kind: str = "cosine") -> AnnIndex:
    """The store's saved FAISS index of ``kind`` (brought up to date with rows added since it was built)."""
    file, meta_file, sur_file = store.ann_files(kind)
    if not file.is_file():
        raise StoreError(f"{store.path} has no {kind} ANN index; build one with `dsembed index ann` "
                         "(or --ann at build time)")
    for part in (meta_file, sur_file) if kind == "head" else (meta_file,):
        if not part.is_file():
            raise StoreError(f"{part} is missing: the {kind} ANN index in {store.path} is damaged; rebuild it")
    meta = read_json(meta_file, f"{kind} ANN index metadata", REBUILD_ANN)
    if not isinstance(meta, dict):
        raise damaged(meta_file, f"the {kind} ANN index metadata is not a JSON object", REBUILD_ANN)
    if meta.get("model_fingerprint") != store.fingerprint:
        raise ModelMismatchError(f"the ANN index in {store.path} belongs to another model; rebuild it")
    surrogate = HeadSurrogate.load(sur_file) if kind == "head" else None
    ann = AnnIndex(read_index(file), meta, surrogate)
    if ann.count > store.count:
        raise StoreError(f"the {kind} ANN index in {store.path} has more rows than the store; rebuild it")
    if ann.count < store.count:
        _extend_ann(store, ann)
    ann.set_params(nprobe=meta.get("nprobe"), ef_search=meta.get("ef_search"))
    return ann


def read_index(file: Path) -> Any:
    """A saved FAISS index; faiss's RuntimeError for a damaged file becomes a one-line error naming it."""
    import faiss

    try:
        return faiss.read_index(str(file))
    except RuntimeError as exc:  # faiss's message ends with what failed, after a C++ location
        raise damaged(file, f"FAISS cannot read the index ({str(exc).rsplit('Error: ', 1)[-1][:160]})",
                      REBUILD_ANN) from None


def _extend_ann(store: CandidateStore, ann: AnnIndex, chunk_rows: int = 65_536) -> None:
    for lo in range(ann.count, store.count, chunk_rows):
        hi = min(store.count, lo + chunk_rows)
        ann.add_rows(np.asarray(store.embeddings(lo, hi)), np.asarray(store.cand_proj(lo, hi)))
    ann.save(store)


def sync_ann(store: CandidateStore) -> None:
    """Append the store's new rows to each ANN index it has (after an ingest)."""
    for kind in PREFILTER_KINDS:
        if has_ann(store, kind):
            load_ann(store, kind)  # adds the new rows and saves
