"""ONNX export vs the torch student: embeddings and head logits, every pooling, dynamic axes, int8 bounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")

from _onnx_students import POOLINGS, SENTENCES, make_student  # noqa: E402

from dsembed.artifacts import ONNX_DIR, ONNX_ENCODER, ONNX_ENCODER_INT8, ONNX_HEAD, ONNX_INFO  # noqa: E402
from dsembed.student.model import DSEModel  # noqa: E402

FP32_TOL = 1e-4  # the target: ONNX fp32 is the torch model up to float rounding
# int8 (dynamic, per-channel weights) on the tiny random model; stated bounds, far looser than what it reaches
INT8_REL_TOL = 0.05  # |e_int8 - e_fp32| / |e_fp32| per sentence
INT8_LOGIT_TOL = 0.1
INT8_MIN_SPEARMAN = 0.98  # rank agreement of the pair logits


@pytest.fixture(scope="module", params=list(POOLINGS))
def exported(request: pytest.FixtureRequest, tiny_base: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved tiny student with ``onnx/`` (fp32 and int8) inside, one per pooling."""
    from dsembed.export import export_onnx

    path = make_student(tiny_base, tmp_path_factory.mktemp(f"onnx-{request.param}"), request.param)
    export_onnx(path, quantize="int8")
    return path


@pytest.fixture(scope="module")
def models(exported: Path) -> tuple[DSEModel, DSEModel, DSEModel]:
    return (DSEModel.load(exported, device="cpu"), DSEModel.load(exported, backend="onnx"),
            DSEModel.load(exported, backend="onnx", quantized=True))


def _pairs() -> list[tuple[str, str]]:
    return [(a, b) for a in SENTENCES for b in SENTENCES if a != b]


def test_fp32_embeddings_and_logits_match_torch(models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    torch_model, onnx_model, _ = models
    for batch_size in (1, 3, 7):  # batch 1 (no padding), and batches padded to different lengths
        ref = torch_model.encode(SENTENCES, batch_size=batch_size)
        got = onnx_model.encode(SENTENCES, batch_size=batch_size)
        assert got.shape == ref.shape == (len(SENTENCES), torch_model.embedding_dim)
        assert np.abs(got - ref).max() <= FP32_TOL
    ref_logits = torch_model.predict(_pairs(), apply_activation=False)
    got_logits = onnx_model.predict(_pairs(), apply_activation=False)
    assert got_logits.shape == ref_logits.shape
    assert np.abs(got_logits - ref_logits).max() <= FP32_TOL
    np.testing.assert_allclose(onnx_model.predict(_pairs()), torch_model.predict(_pairs()), atol=FP32_TOL)


def test_dynamic_axes_each_sentence_alone_equals_the_batch(models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    _, onnx_model, _ = models
    batch = onnx_model.encode(SENTENCES, batch_size=7)
    lengths = {onnx_model.encoder.features([s])["input_ids"].shape[1] for s in SENTENCES}
    assert len(lengths) >= 4  # really different sequence lengths, one of them truncated
    for i, sentence in enumerate(SENTENCES):
        single = onnx_model.encode(sentence)
        assert single.shape == (onnx_model.embedding_dim,)
        assert np.abs(single - batch[i]).max() <= FP32_TOL


def test_int8_within_stated_bounds_and_keeps_the_ranking(models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    _, fp32, int8 = models
    a, b = fp32.encode(SENTENCES), int8.encode(SENTENCES)
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    assert rel.max() <= INT8_REL_TOL
    la, lb = fp32.predict(_pairs(), apply_activation=False), int8.predict(_pairs(), apply_activation=False)
    assert np.abs(la - lb).max() <= INT8_LOGIT_TOL
    from scipy.stats import spearmanr

    assert spearmanr(la.reshape(-1), lb.reshape(-1)).statistic >= INT8_MIN_SPEARMAN
    assert not np.array_equal(a, b)  # it is really the quantised graph


def test_head_graph_broadcasts_like_the_torch_head(models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    torch_model, onnx_model, _ = models
    emb = torch_model.encode(SENTENCES)
    for u, v in ((emb[0], emb), (emb, emb[1]), (emb, emb[::-1].copy()), (torch.from_numpy(emb), emb)):
        ref = torch_model.head_logits(u, v)
        got = onnx_model.head_logits(u, v, batch_size=3)
        assert got.shape == ref.shape and np.abs(got - ref).max() <= FP32_TOL


def test_store_scorer_reads_the_same_head(models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    """The store's one-query-many-candidates algebra uses the head weights kept beside the graphs."""
    from dsembed.student.head import HeadScorer

    torch_model, onnx_model, _ = models
    emb = torch.from_numpy(onnx_model.encode(SENTENCES))
    scorer = HeadScorer(onnx_model.head)
    proj = torch.from_numpy(scorer.candidate_proj(emb))
    got = scorer.block_logits(emb[:2], emb, proj).numpy()
    ref = np.stack([torch_model.head_logits(emb[q].numpy(), emb.numpy()) for q in range(2)])
    assert np.abs(got - ref).max() <= 1e-4


def test_no_torch_forward_pass(models: tuple[DSEModel, DSEModel, DSEModel], monkeypatch: pytest.MonkeyPatch) -> None:
    _, onnx_model, int8 = models
    expected = onnx_model.predict(_pairs()[:5])

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("a torch module ran")

    monkeypatch.setattr(torch.nn.Module, "__call__", forbidden)
    np.testing.assert_array_equal(onnx_model.predict(_pairs()[:5]), expected)
    assert int8.encode(SENTENCES[:2]).shape == (2, onnx_model.embedding_dim)


def test_export_folder_and_record(exported: Path, models: tuple[DSEModel, DSEModel, DSEModel]) -> None:
    from dsembed.retrieval import model_fingerprint

    torch_model, onnx_model, int8 = models
    folder = exported / ONNX_DIR
    info = json.loads((folder / ONNX_INFO).read_text())
    assert {ONNX_ENCODER, ONNX_ENCODER_INT8, ONNX_HEAD} <= {p.name for p in folder.iterdir()}
    assert not list(folder.glob("*.py"))  # nothing to execute: no trust_remote_code anywhere
    assert info["opset"] == 17 and info["pooling"] == torch_model.config.pooling
    assert info["embedding_dim"] == torch_model.embedding_dim
    assert info["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    assert info["source"]["fingerprint"] == model_fingerprint(torch_model)
    assert info["encoder"]["int8"]["quantization"]["per_channel"] is True
    assert info["parity"]["fp32"]["max_abs_embedding_diff"] <= FP32_TOL
    # a store built with one backend is never silently searched with another
    assert len({model_fingerprint(m) for m in models}) == 3
    import onnx

    graph = onnx.load(str(folder / ONNX_ENCODER)).graph
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input]
    assert dims == [["batch", "sequence"]] * 3
    assert [d.dim_param or d.dim_value for d in graph.output[0].type.tensor_type.shape.dim] == \
        ["batch", torch_model.embedding_dim]


def test_in_memory_model_to_own_folder(tiny_base: str, tmp_path: Path) -> None:
    from dsembed.export import export_onnx

    path = make_student(tiny_base, tmp_path, "mean")
    model = DSEModel.load(path, device="cpu")
    out = export_onnx(model, tmp_path / "deploy")
    onnx_model = DSEModel.load(out, backend="onnx", intra_op_num_threads=2)
    assert onnx_model.encoder.session.get_session_options().intra_op_num_threads == 2
    assert np.abs(onnx_model.encode(SENTENCES) - model.encode(SENTENCES)).max() <= FP32_TOL
    with pytest.raises(FileNotFoundError, match="no int8 encoder graph"):
        DSEModel.load(out, backend="onnx", quantized=True)


def test_store_and_rank_on_the_onnx_backend(models: tuple[DSEModel, DSEModel, DSEModel], tmp_path: Path) -> None:
    """A store built and searched with the ONNX student ranks like the torch one; a torch store is refused."""
    from dsembed.errors import ModelMismatchError
    from dsembed.retrieval import build_store, rank

    torch_model, onnx_model, _ = models
    label = 0 if torch_model.task.kind == "multiclass" else None  # multiclass ranks by one class
    corpus = SENTENCES[1:] + [" ".join(reversed(s.split())) for s in SENTENCES[1:]]  # no ties
    torch_store = build_store(torch_model, corpus, tmp_path / "torch", show_progress_bar=False)
    onnx_store = build_store(onnx_model, corpus, tmp_path / "onnx", show_progress_bar=False)
    ref = rank(torch_model, SENTENCES[0], torch_store, top_k=5, label=label)
    got = rank(onnx_model, SENTENCES[0], onnx_store, top_k=5, label=label)
    assert [h.row for h in got] == [h.row for h in ref]
    assert max(abs(a.score - b.score) for a, b in zip(got, ref, strict=True)) <= 1e-4
    with pytest.raises(ModelMismatchError):
        rank(onnx_model, SENTENCES[0], torch_store, top_k=5, label=label)
