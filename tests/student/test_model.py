"""The DSE student: pooling, pair head, save/load round trips, sentence-transformers compatibility, predict."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from conftest import MAX_LEN, MRPC, NLI3, STSB, TINY_HIDDEN, TINY_LAYERS, needs_minilm
from dsembed.artifacts import POOLING_CODE as POOLING_CODE_FILE
from dsembed.artifacts import STUDENT_CONFIG as CONFIG_FILE
from dsembed.artifacts import STUDENT_HEAD as HEAD_FILE
from dsembed.student import DSEModel, PairHead
from dsembed.student.loss import DSELoss, logits_to_scores, task_loss
from dsembed.student.pooling import concat_mean_pool

SENTENCES = ["A man is playing a guitar.", "The cat sleeps.", "Two children are running on the beach today.",
             "Stocks fell sharply on Monday."]


def tiny_student(base: str, task=MRPC, **kwargs) -> DSEModel:  # noqa: ANN001
    kwargs.setdefault("head_hidden", 16)
    return DSEModel.from_base(base, task, max_seq_length=MAX_LEN, device="cpu", **kwargs)


@pytest.fixture(scope="module")
def topk_model(tiny_base: str) -> DSEModel:
    return tiny_student(tiny_base)


@pytest.fixture(scope="module")
def saved_topk(topk_model: DSEModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("student-topk") / "model"
    topk_model.save(path)
    return path


# ---- pooling --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("pooling", "top_k", "dim"), [
    ("topk", 4, 4 * TINY_HIDDEN), ("top4", 99, 4 * TINY_HIDDEN), ("topk", 2, 2 * TINY_HIDDEN),
    ("mean", 4, TINY_HIDDEN), ("cls", 4, TINY_HIDDEN),
])
def test_pooling_dimensions(tiny_base: str, pooling: str, top_k: int, dim: int) -> None:
    model = tiny_student(tiny_base, pooling=pooling, top_k=top_k)
    assert model.embedding_dim == dim
    assert model.encoder.get_embedding_dimension() == dim
    assert model.encode(SENTENCES[:2]).shape == (2, dim)
    assert model.head.dense.in_features == 4 * dim


def test_pooling_validation(tiny_base: str) -> None:
    with pytest.raises(ValueError, match="unknown pooling"):
        tiny_student(tiny_base, pooling="max")
    with pytest.raises(ValueError, match="top_k=5"):
        tiny_student(tiny_base, pooling="topk", top_k=TINY_LAYERS + 1)


def test_concat_mean_pool_masks_padding() -> None:
    torch.manual_seed(0)
    layers = tuple(torch.randn(2, 5, 3) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    pooled = concat_mean_pool(layers, mask, top_k=2)
    assert pooled.shape == (2, 6)
    expected0 = torch.cat([layers[2][0, :3].mean(0), layers[3][0, :3].mean(0)])
    torch.testing.assert_close(pooled[0], expected0)
    # garbage in padded positions must not leak into the embedding
    noisy = tuple(layer.clone() for layer in layers)
    for layer in noisy:
        layer[0, 3:] = 1e6
    torch.testing.assert_close(concat_mean_pool(noisy, mask, top_k=2), pooled)


def test_topk_embedding_ignores_padding_in_batch(topk_model: DSEModel) -> None:
    alone = topk_model.encode(["The cat sleeps."])
    padded = topk_model.encode(["The cat sleeps.", "A much longer sentence that forces a lot of padding tokens "
                                "onto the short one in the same batch."], batch_size=2)
    np.testing.assert_allclose(padded[0], alone[0], atol=1e-5, rtol=1e-4)


def test_topk_is_mean_of_last_k_hidden_layers(topk_model: DSEModel) -> None:
    """The top-k embedding is the masked mean of each of the last 4 layers, last layer last."""
    transformer = topk_model.encoder[0]
    features = topk_model.tokenize(["Two children are running."])
    with torch.no_grad():
        inputs = {k: v for k, v in features.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        hidden = transformer.model(**inputs, output_hidden_states=True).hidden_states
    expected = torch.cat([h[0].mean(0) for h in hidden[-4:]]).numpy()
    np.testing.assert_allclose(topk_model.encode(["Two children are running."])[0], expected, atol=1e-5)


# ---- head -----------------------------------------------------------------------------------------


def test_pair_head_features_and_shape() -> None:
    u = torch.tensor([[1.0, -2.0]])
    v = torch.tensor([[3.0, 4.0]])
    feats = PairHead.pair_features(u, v)
    torch.testing.assert_close(feats, torch.tensor([[1.0, -2.0, 3.0, 4.0, 3.0, -8.0, 2.0, 6.0]]))
    head = PairHead(2, hidden_dim=5, num_outputs=3)
    assert head.dense.in_features == 8 and head.dense.out_features == 5
    out = head(u.repeat(4, 1), v.repeat(4, 1))
    assert out.shape == (4, 3)
    manual = head.out(torch.relu(head.dense(feats)))
    torch.testing.assert_close(out[0], manual[0])


@pytest.mark.parametrize(("task", "outputs"), [(MRPC, 1), (STSB, 1), (NLI3, 3)])
def test_head_outputs_follow_task(tiny_base: str, task, outputs: int) -> None:  # noqa: ANN001
    model = tiny_student(tiny_base, task, pooling="mean")
    assert model.head.out.out_features == outputs
    assert model.predict([("a b", "c d"), ("e", "f")], apply_activation=False).shape == (2, outputs)


def test_forward_returns_logits_and_dse_loss(topk_model: DSEModel) -> None:
    a = topk_model.tokenize(["The cat sleeps.", "A man runs."])
    b = topk_model.tokenize(["A dog sleeps.", "Stocks fell."])
    labels = torch.tensor([1.0, 0.0])
    teacher = torch.tensor([[2.0], [-1.0]])
    out = topk_model(a, b, labels=labels, teacher_logits=teacher)
    assert out["logits"].shape == (2, 1)
    expected = 0.5 * task_loss(MRPC, out["logits"], labels) + 0.5 * ((out["logits"] - teacher) ** 2).mean()
    torch.testing.assert_close(out["loss"], expected)
    assert set(topk_model.last_loss_parts) == {"task_loss", "distill_loss"}
    assert "loss" not in topk_model(a, b)


# ---- save / load ----------------------------------------------------------------------------------


def test_save_load_round_trip(topk_model: DSEModel, saved_topk: Path) -> None:
    for name in (CONFIG_FILE, HEAD_FILE, POOLING_CODE_FILE, "modules.json"):
        assert (saved_topk / name).is_file(), name
    loaded = DSEModel.load(saved_topk, device="cpu")
    assert loaded.config.pooling == "topk" and loaded.config.top_k == 4
    assert loaded.task == MRPC
    np.testing.assert_array_equal(loaded.encode(SENTENCES), topk_model.encode(SENTENCES))
    pairs = [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[3])]
    np.testing.assert_array_equal(loaded.predict(pairs), topk_model.predict(pairs))
    assert not loaded.training


def test_save_is_atomic_replace(topk_model: DSEModel, tmp_path: Path) -> None:
    path = tmp_path / "student"
    path.mkdir()
    (path / "stale.txt").write_text("old")
    topk_model.save(path)
    assert not (path / "stale.txt").exists()
    assert (path / CONFIG_FILE).is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_multiclass_round_trip(tiny_base: str, tmp_path: Path) -> None:
    model = tiny_student(tiny_base, NLI3, pooling="cls")
    model.save(tmp_path / "m")
    assert not (tmp_path / "m" / POOLING_CODE_FILE).exists()
    loaded = DSEModel.load(tmp_path / "m", device="cpu")
    assert loaded.task.labels == NLI3.labels and loaded.task.kind == "multiclass"
    pairs = [("a b", "c d")]
    np.testing.assert_array_equal(loaded.predict(pairs), model.predict(pairs))


def test_plain_sentence_transformer_loads_topk_student(topk_model: DSEModel, saved_topk: Path) -> None:
    modules = json.loads((saved_topk / "modules.json").read_text())
    assert modules[1]["type"] == "dsembed_pooling.LayerConcatMeanPooling"
    st = SentenceTransformer(str(saved_topk), trust_remote_code=True, device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), topk_model.encode(SENTENCES), atol=1e-6)
    with pytest.raises(ValueError, match="trust_remote_code"):
        SentenceTransformer(str(saved_topk), device="cpu")


def test_plain_sentence_transformer_loads_mean_student_without_remote_code(tiny_base: str, tmp_path: Path) -> None:
    model = tiny_student(tiny_base, STSB, pooling="mean")
    model.save(tmp_path / "mean")
    assert not (tmp_path / "mean" / POOLING_CODE_FILE).exists()
    st = SentenceTransformer(str(tmp_path / "mean"), device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), model.encode(SENTENCES), atol=1e-6)


def test_load_refuses_tampered_pooling_code(saved_topk: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(saved_topk, tampered)
    code = tampered / POOLING_CODE_FILE
    code.write_text(code.read_text() + "\nprint('pwned')\n")
    with pytest.raises(ValueError, match="differs from dsembed's pooling code"):
        DSEModel.load(tampered, device="cpu")
    # an explicit opt-in is honoured
    assert DSEModel.load(tampered, device="cpu", trust_remote_code=True).embedding_dim == 4 * TINY_HIDDEN


def test_load_refuses_foreign_module_next_to_genuine_pooling_code(saved_topk: Path, tmp_path: Path) -> None:
    tampered = tmp_path / "tampered"
    shutil.copytree(saved_topk, tampered)
    marker = tmp_path / "executed"
    source = (tampered / POOLING_CODE_FILE).read_text()
    future = "from __future__ import annotations\n"
    (tampered / "foreign_pooling.py").write_text(
        source.replace(future, f"{future}open({str(marker)!r}, 'w').close()\n", 1))
    modules = json.loads((tampered / "modules.json").read_text())
    modules[1]["type"] = "foreign_pooling.LayerConcatMeanPooling"
    (tampered / "modules.json").write_text(json.dumps(modules))
    try:
        with pytest.raises(ValueError):
            DSEModel.load(tampered, device="cpu")
    finally:
        assert not marker.exists(), "DSEModel.load ran code from the folder without trust_remote_code"


def test_load_rejects_non_student_folder(tiny_base: str) -> None:
    with pytest.raises(FileNotFoundError, match=CONFIG_FILE):
        DSEModel.load(tiny_base)


# ---- predict --------------------------------------------------------------------------------------


def test_predict_encodes_each_distinct_sentence_once(topk_model: DSEModel, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real_encode = topk_model.encode

    def counting_encode(sentences, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        seen.append(list(sentences))
        return real_encode(sentences, *args, **kwargs)

    monkeypatch.setattr(topk_model, "encode", counting_encode)
    a, b, c = SENTENCES[:3]
    pairs = [(a, b), (b, a), (a, c), (c, c), (a, b)]
    logits = topk_model.predict(pairs, apply_activation=False)
    assert len(seen) == 1
    assert sorted(seen[0]) == sorted({a, b, c})

    emb = dict(zip(seen[0], real_encode(seen[0]), strict=True))
    expected = topk_model.head_logits(np.stack([emb[x] for x, _ in pairs]), np.stack([emb[y] for _, y in pairs]))
    np.testing.assert_allclose(logits, expected, atol=1e-6)
    np.testing.assert_allclose(logits[0], logits[4])
    assert not np.allclose(logits[0], logits[1])  # the head is not symmetric in (u, v)


def test_predict_matches_head_on_separate_encodes(topk_model: DSEModel) -> None:
    pairs = [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[3])]
    u = topk_model.encode([p[0] for p in pairs])
    v = topk_model.encode([p[1] for p in pairs])
    with torch.no_grad():
        expected = topk_model.head(torch.as_tensor(u), torch.as_tensor(v)).numpy()
    np.testing.assert_allclose(topk_model.predict(pairs, apply_activation=False), expected, atol=1e-5)
    # head_logits broadcasts one query against many candidates
    np.testing.assert_allclose(topk_model.head_logits(u[0], v), topk_model.head_logits(np.stack([u[0]] * 2), v),
                               atol=1e-6)


def test_predict_output_semantics(tiny_base: str, topk_model: DSEModel) -> None:
    pairs = [(SENTENCES[0], SENTENCES[1]), (SENTENCES[2], SENTENCES[3]), (SENTENCES[1], SENTENCES[1])]
    binary = topk_model.predict(pairs)
    assert binary.shape == (3,) and np.all((binary >= 0) & (binary <= 1))
    raw = topk_model.predict(pairs, apply_activation=False)
    np.testing.assert_allclose(binary, 1 / (1 + np.exp(-raw[:, 0])), atol=1e-6)

    multi = tiny_student(tiny_base, NLI3, pooling="mean")
    probs = multi.predict(pairs)
    assert probs.shape == (3, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    assert np.all(probs >= 0)

    reg = tiny_student(tiny_base, STSB, pooling="mean")
    np.testing.assert_allclose(reg.predict(pairs), reg.predict(pairs, apply_activation=False)[:, 0])
    assert topk_model.predict([]).shape == (0,)


# ---- losses ---------------------------------------------------------------------------------------


def test_loss_formula_by_hand() -> None:
    logits = torch.tensor([[0.5], [-1.0]])
    labels = torch.tensor([1.0, 0.0])
    teacher = torch.tensor([[2.0], [0.0]])
    bce = -(np.log(1 / (1 + np.exp(-0.5))) + np.log(1 - 1 / (1 + np.exp(1.0)))) / 2
    mse = ((0.5 - 2.0) ** 2 + (-1.0 - 0.0) ** 2) / 2
    parts = DSELoss(MRPC, alpha=0.3)(logits, labels, teacher)
    assert parts["task_loss"].item() == pytest.approx(bce, rel=1e-5)
    assert parts["distill_loss"].item() == pytest.approx(mse, rel=1e-6)
    assert parts["loss"].item() == pytest.approx(0.7 * bce + 0.3 * mse, rel=1e-5)


def test_distill_loss_sums_over_classes() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    teacher = torch.tensor([[0.0, 0.0, 1.0]])
    labels = torch.tensor([2.0])
    parts = DSELoss(NLI3, alpha=0.5)(logits, labels, teacher)
    assert parts["distill_loss"].item() == pytest.approx(1 + 4 + 4)
    ce = -np.log(np.exp(3) / (np.exp(1) + np.exp(2) + np.exp(3)))
    assert parts["task_loss"].item() == pytest.approx(ce, rel=1e-5)


def test_alpha_extremes() -> None:
    logits = torch.tensor([[0.5], [1.5]])
    labels = torch.tensor([1.0, 3.0])
    teacher = torch.tensor([[0.0], [0.0]])
    only_labels = DSELoss(STSB, alpha=0.0)
    assert "distill_loss" not in only_labels(logits, labels, teacher)
    assert only_labels(logits, labels, teacher)["loss"].item() == pytest.approx(only_labels(logits, labels)["loss"])
    assert only_labels(logits, labels, teacher * 100)["loss"].item() == pytest.approx((0.25 + 2.25) / 2)
    only_teacher = DSELoss(STSB, alpha=1.0)
    assert "task_loss" not in only_teacher(logits, labels, teacher)
    assert only_teacher(logits, labels * 100, teacher)["loss"].item() == pytest.approx((0.25 + 2.25) / 2)
    assert only_teacher(logits, None, teacher)["loss"].item() == pytest.approx((0.25 + 2.25) / 2)
    # evaluation rows carry labels but no teacher logits: alpha=1 still gives labels zero weight
    assert only_teacher(logits, labels, None)["loss"].item() == 0.0
    with pytest.raises(ValueError, match="needs labels"):
        only_teacher(logits, None, None)
    with pytest.raises(ValueError, match="needs labels"):
        only_labels(logits, None, teacher)


@pytest.mark.parametrize("alpha", [-0.1, 1.01])
def test_alpha_out_of_range(alpha: float) -> None:
    with pytest.raises(ValueError, match="alpha"):
        DSELoss(MRPC, alpha=alpha)


def test_logits_to_scores() -> None:
    logits = torch.tensor([[0.0, 1.0, -1.0], [2.0, 2.0, 2.0]])
    sigmoid2 = float(torch.sigmoid(torch.tensor(2.0)))
    torch.testing.assert_close(logits_to_scores(MRPC, logits), torch.tensor([0.5, sigmoid2]))
    torch.testing.assert_close(logits_to_scores(STSB, logits), torch.tensor([0.0, 2.0]))
    torch.testing.assert_close(logits_to_scores(NLI3, logits)[1], torch.full((3,), 1 / 3))


# ---- the real MiniLM weights (small) ------------------------------------------------------------


@needs_minilm
def test_real_minilm_mean_pooling_matches_shipped_sentence_transformer() -> None:
    from dsembed.bases import resolve_model_path

    ours = DSEModel.from_base("all-MiniLM-L6-v2", STSB, pooling="mean", device="cpu")
    reference = SentenceTransformer(resolve_model_path("all-MiniLM-L6-v2"), device="cpu")
    ref = reference.encode(SENTENCES)  # the shipped model L2-normalises
    mine = ours.encode(SENTENCES, normalize_embeddings=True)
    assert mine.shape == ref.shape == (4, 384)
    np.testing.assert_allclose(mine, ref, atol=1e-5)
    raw = ours.encode(SENTENCES)
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)  # our mean pooling itself does not normalise
    # top-k pooling over the same weights: its last block is exactly the mean pooling of the last layer
    topk = DSEModel.from_base("all-MiniLM-L6-v2", STSB, pooling="topk", device="cpu")
    emb = topk.encode(SENTENCES)
    assert emb.shape == (4, 4 * 384)
    np.testing.assert_allclose(emb[:, -384:], raw, atol=1e-5)
