"""Teacher fine-tuning, the teacher-logits cache, distillation (incl. resume) and the full pipeline."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from sentence_transformers import CrossEncoder

from conftest import MAX_LEN, MRPC, NLI3, STSB, glue_dir, needs_glue, synthetic_pairs
from dsembed.artifacts import TEACHER_INFO
from dsembed.config import PipelineConfig, StudentConfig, TeacherConfig
from dsembed.data import PairDataset
from dsembed.errors import StaleLogitsError
from dsembed.student import DistillationTrainer, distill
from dsembed.student.model import DSEModel
from dsembed.teacher import Teacher, train_teacher
from dsembed.teacher.logits import TeacherLogits, compute_teacher_logits, logits_cache_path
from dsembed.teacher.train import IDENTITY_ACTIVATION

SHORT_PAIRS = [("A man is playing a guitar.", "A man plays guitar."), ("The cat sleeps.", "Stocks fell sharply."),
               ("Two kids run on the beach.", "Children are running.")]


# ---- teacher --------------------------------------------------------------------------------------


def test_binary_teacher_folder_loads_in_cross_encoder(binary_teacher: Path, mrpc_train: PairDataset) -> None:
    info = json.loads((binary_teacher / TEACHER_INFO).read_text())
    assert info["task"] == "mrpc" and info["train_pairs"] == len(mrpc_train) == 32
    assert {"accuracy", "f1"} <= set(info["dev_metrics"])
    assert info["max_length"] == MAX_LEN
    assert info["best_checkpoint"] is not None
    assert len(info["dev_curve"]) == 1 and info["dev_curve"][0]["epoch"] == 1.0
    assert info["dev_curve"][0]["f1"] == pytest.approx(info["dev_metrics"]["f1"])  # one epoch: it is the best
    ce = CrossEncoder(str(binary_teacher), device="cpu")
    scores = ce.predict(SHORT_PAIRS)
    assert scores.shape == (3, 2) and np.all(np.isfinite(scores))
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    np.testing.assert_allclose(scores, teacher.predict_logits(SHORT_PAIRS), atol=1e-5)
    # the student-scale score is P(positive) from logit1 - logit0
    logits = teacher.predict_logits(SHORT_PAIRS)
    np.testing.assert_allclose(teacher.predict(SHORT_PAIRS), 1 / (1 + np.exp(-(logits[:, 1] - logits[:, 0]))),
                               atol=1e-6)


def test_regression_teacher_cross_encoder_is_identity(tiny_base: str, stsb_train: PairDataset,
                                                      stsb_dev: PairDataset, tmp_path: Path) -> None:
    recipe = TeacherConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0, max_train_pairs=16)
    path = train_teacher(STSB, stsb_train, stsb_dev, tmp_path / "teacher", recipe, show_progress_bar=False).path
    config = json.loads((path / "config.json").read_text())
    assert config["sentence_transformers"]["activation_fn"] == IDENTITY_ACTIVATION
    assert json.loads((path / TEACHER_INFO).read_text())["train_pairs"] == 16
    teacher = Teacher(path, STSB, device="cpu")
    logits = teacher.predict_logits(SHORT_PAIRS)
    assert logits.shape == (3, 1)
    ce = CrossEncoder(str(path), device="cpu")
    np.testing.assert_allclose(ce.predict(SHORT_PAIRS), logits[:, 0], atol=1e-5)
    np.testing.assert_allclose(teacher.predict(SHORT_PAIRS), logits[:, 0], atol=1e-6)


def test_teacher_rejects_wrong_task(binary_teacher: Path) -> None:
    with pytest.raises(ValueError, match="has 2 outputs"):
        Teacher(binary_teacher, NLI3, device="cpu")


def test_predict_logits_order_is_independent_of_batching(binary_teacher: Path, mrpc_train: PairDataset) -> None:
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    pairs = mrpc_train.pairs()[:10]
    batched = teacher.predict_logits(pairs, batch_size=3)
    one_by_one = np.concatenate([teacher.predict_logits([p]) for p in pairs])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    assert teacher.predict_logits([]).shape == (0, 2)


def test_teacher_fingerprint_tracks_weights_and_length(binary_teacher: Path, tmp_path: Path) -> None:
    original = Teacher(binary_teacher, MRPC, device="cpu")
    copy = tmp_path / "copy"
    shutil.copytree(binary_teacher, copy)
    assert Teacher(copy, MRPC, device="cpu").fingerprint() == original.fingerprint()  # content, not location
    assert Teacher(copy, MRPC, max_length=64, device="cpu").fingerprint() != original.fingerprint()
    weights = load_file(str(copy / "model.safetensors"))
    name = next(k for k in weights if k.startswith("classifier"))
    weights[name] = weights[name] + 1.0
    save_file(weights, str(copy / "model.safetensors"), metadata={"format": "pt"})
    assert Teacher(copy, MRPC, device="cpu").fingerprint() != original.fingerprint()


# ---- teacher logits cache ---------------------------------------------------------------------------


class _Counting:
    """Wraps ``teacher.predict_logits``: counts calls and pairs, optionally fails on the n-th call."""

    def __init__(self, teacher: Teacher, fail_on: int | None = None) -> None:
        self.real = teacher.predict_logits
        self.calls = 0
        self.pairs = 0
        self.fail_on = fail_on

    def __call__(self, pairs, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN204
        self.calls += 1
        if self.fail_on is not None and self.calls == self.fail_on:
            raise KeyboardInterrupt("simulated interruption")
        self.pairs += len(pairs)
        return self.real(pairs, *args, **kwargs)


@pytest.fixture()
def teacher(binary_teacher: Path) -> Teacher:
    return Teacher(binary_teacher, MRPC, device="cpu")


def test_compute_teacher_logits_caches(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counting(teacher)
    monkeypatch.setattr(teacher, "predict_logits", counter)
    first = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 1 and counter.pairs == len(mrpc_train)
    np.testing.assert_allclose(first.logits, counter.real(mrpc_train.pairs()), atol=1e-6)
    assert first.teacher_fingerprint == teacher.fingerprint()
    assert first.pairs_fingerprint == mrpc_train.fingerprint()
    np.testing.assert_array_equal(first.pair_hashes, mrpc_train.pair_hashes())
    assert (logits_cache_path(teacher.fingerprint(), mrpc_train, tmp_path) / "logits.safetensors").is_file()

    second = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 1  # served from the cache
    np.testing.assert_array_equal(second.logits, first.logits)

    compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False, use_cache=False)
    assert counter.calls == 2

    other = mrpc_train.subset(20, seed=5)
    compute_teacher_logits(teacher, other, cache=tmp_path, show_progress_bar=False)
    assert counter.calls == 3 and counter.pairs == 2 * len(mrpc_train) + 20  # other pairs, other cache key


def test_compute_teacher_logits_resumes_from_chunks(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    expected = teacher.predict_logits(mrpc_train.pairs())
    folder = logits_cache_path(teacher.fingerprint(), mrpc_train, tmp_path)
    failing = _Counting(teacher, fail_on=2)
    monkeypatch.setattr(teacher, "predict_logits", failing)
    with pytest.raises(KeyboardInterrupt):
        compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, chunk_size=8, show_progress_bar=False)
    assert sorted(p.name for p in folder.glob("chunk_*.npy")) == ["chunk_000000_8.npy"]
    assert not (folder / "logits.safetensors").exists()

    resumed = _Counting(teacher)
    monkeypatch.setattr(teacher, "predict_logits", resumed)
    result = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, chunk_size=8, show_progress_bar=False)
    assert resumed.calls == 3 and resumed.pairs == len(mrpc_train) - 8  # the finished chunk is not redone
    np.testing.assert_allclose(result.logits, expected, atol=1e-5)
    assert not list(folder.glob("chunk_*.npy"))  # chunks are folded into the final file
    assert (folder / "logits.safetensors").is_file()


def test_check_matches_refuses_stale_logits(teacher: Teacher, mrpc_train: PairDataset, tmp_path: Path) -> None:
    stored = compute_teacher_logits(teacher, mrpc_train, cache=tmp_path, show_progress_bar=False)
    stored.check_matches(mrpc_train, teacher.fingerprint())  # fine
    changed = PairDataset(list(mrpc_train.sentence1), list(mrpc_train.sentence2), mrpc_train.labels)
    changed.sentence2[5] = changed.sentence2[5] + " (edited)"
    with pytest.raises(StaleLogitsError, match="1 differ, first at row 5"):
        stored.check_matches(changed)
    swapped = PairDataset(mrpc_train.sentence2, mrpc_train.sentence1, mrpc_train.labels)
    with pytest.raises(StaleLogitsError, match="do not match"):
        stored.check_matches(swapped)
    with pytest.raises(StaleLogitsError, match="cover 32 pairs, the data has 31"):
        stored.check_matches(mrpc_train.select(range(31)))
    with pytest.raises(StaleLogitsError, match="another teacher"):
        stored.check_matches(mrpc_train, teacher_fingerprint="someone-else:len32")
    # labels are not part of the key: relabelled pairs still match
    stored.check_matches(PairDataset(mrpc_train.sentence1, mrpc_train.sentence2, 1 - mrpc_train.labels))


def test_teacher_logits_file_round_trip(tmp_path: Path) -> None:
    data = synthetic_pairs(NLI3, 6)
    logits = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    original = TeacherLogits(logits, data.pair_hashes(), "fp-teacher", data.fingerprint(), "nli3")
    path = tmp_path / "sub" / "logits.safetensors"
    original.save(path)
    loaded = TeacherLogits.load(path)
    np.testing.assert_array_equal(loaded.logits, logits)
    np.testing.assert_array_equal(loaded.pair_hashes, data.pair_hashes())
    assert loaded.pair_hashes.dtype == np.uint64
    assert (loaded.teacher_fingerprint, loaded.pairs_fingerprint, loaded.task) == \
        ("fp-teacher", data.fingerprint(), "nli3")
    loaded.check_matches(data, "fp-teacher")
    assert not list(path.parent.glob(".*tmp"))

    from safetensors.numpy import save_file as save_np

    save_np({"x": np.zeros(2, np.float32)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(ValueError, match="not a dsembed teacher-logits file"):
        TeacherLogits.load(tmp_path / "other.safetensors")


# ---- distillation ---------------------------------------------------------------------------------


def test_distill_saves_student_with_dev_metrics(distilled_dir: Path, mrpc_train: PairDataset,
                                                mrpc_dev: PairDataset) -> None:
    training = json.loads((distilled_dir / "training.json").read_text())
    assert training["alpha"] == 0.5 and training["train_pairs"] == len(mrpc_train)
    assert {"accuracy", "f1", "loss"} <= set(training["dev_metrics"])
    assert 0.0 <= training["dev_metrics"]["accuracy"] <= 100.0
    assert training["best_checkpoint"] == "checkpoint-2"  # 32 pairs / batch 16, one epoch
    student = DSEModel.load(distilled_dir / "model", device="cpu")
    assert student.config.training["dev_metrics"] == training["dev_metrics"]
    assert student.config.pooling == "topk" and student.embedding_dim == 128
    from dsembed.evaluation import evaluate_student

    metrics, logits = evaluate_student(student, MRPC, mrpc_dev)
    assert logits.shape == (len(mrpc_dev), 1)
    # the saved student is the evaluated one: its dev accuracy is what training recorded
    assert metrics["accuracy"] == pytest.approx(training["dev_metrics"]["accuracy"], abs=1e-3)


def test_distill_argument_checks(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                 tmp_path: Path) -> None:
    cfg = StudentConfig(base=tiny_base, alpha=0.5, epochs=1)
    with pytest.raises(ValueError, match="alpha > 0 needs teacher logits"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, None, cfg)
    with pytest.raises(ValueError, match="10 teacher logits for 32 training pairs"):
        distill(MRPC, mrpc_train, mrpc_dev, tmp_path, np.zeros((10, 2), np.float32), cfg)
    unlabelled = PairDataset(mrpc_train.sentence1, mrpc_train.sentence2, None)
    with pytest.raises(ValueError, match="no labels"):
        distill(MRPC, unlabelled, mrpc_dev, tmp_path, np.zeros((32, 2), np.float32), cfg)
    assert not (tmp_path / "model").exists()


def test_distill_resumes_from_checkpoints(tiny_base: str, mrpc_train: PairDataset, mrpc_dev: PairDataset,
                                          tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    steps: list[int] = []
    real_step = DistillationTrainer.training_step

    def counting_step(self, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        steps.append(self.state.global_step)
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(DistillationTrainer, "training_step", counting_step)
    train = mrpc_train.select(range(16))
    cfg = StudentConfig(base=tiny_base, alpha=0.0, epochs=1, batch_size=8, head_hidden=8, max_length=16, seed=0)
    distill(MRPC, train, mrpc_dev, tmp_path, None, cfg, show_progress_bar=False, device="cpu")
    assert steps == [0, 1]
    assert (tmp_path / "checkpoints" / "checkpoint-2").is_dir()

    # same folder, one more epoch: only the new epoch is trained, starting at step 2
    steps.clear()
    more = replace(cfg, epochs=2)
    distill(MRPC, train, mrpc_dev, tmp_path, None, more, show_progress_bar=False, device="cpu")
    assert steps == [2, 3]
    state = json.loads((tmp_path / "checkpoints" / "checkpoint-4" / "trainer_state.json").read_text())
    assert state["global_step"] == 4
    training = json.loads((tmp_path / "training.json").read_text())
    assert training["epochs"] == 2
    # the resumed run's dev curve still holds the first epoch's evaluation, one row per epoch
    assert [row["epoch"] for row in training["dev_curve"]] == [1.0, 2.0]
    assert {"accuracy", "f1", "loss"} <= set(training["dev_curve"][0])
    from dsembed.training import dev_curve_from_checkpoints

    assert dev_curve_from_checkpoints(tmp_path) == training["dev_curve"]

    # resume=False starts over
    steps.clear()
    distill(MRPC, train, mrpc_dev, tmp_path, None, cfg, resume=False, show_progress_bar=False, device="cpu")
    assert steps == [0, 1]


def test_distill_multiclass_alpha_one_without_labels(tiny_base: str, nli3_train: PairDataset,
                                                     tmp_path: Path) -> None:
    """alpha=1 learns from teacher logits alone; the 3 teacher logits are the student's targets."""
    teacher_logits = np.random.default_rng(0).normal(size=(len(nli3_train), 3)).astype(np.float32)
    unlabelled = PairDataset(nli3_train.sentence1, nli3_train.sentence2, None)
    cfg = StudentConfig(base=tiny_base, alpha=1.0, pooling="mean", epochs=1, batch_size=12, head_hidden=8,
                        max_length=16, seed=0, head_learning_rate=1e-3)
    path = distill(NLI3, unlabelled, nli3_train, tmp_path, teacher_logits, cfg, show_progress_bar=False,
                   device="cpu").path
    student = DSEModel.load(path, device="cpu")
    assert student.task.kind == "multiclass" and student.head.out.out_features == 3
    assert student.predict(nli3_train.pairs()[:2]).shape == (2, 3)


def test_head_learning_rate_groups(tiny_base: str, tmp_path: Path) -> None:
    from transformers import TrainingArguments

    model = DSEModel.from_base(tiny_base, MRPC, head_hidden=8, max_seq_length=16, device="cpu")
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-5, weight_decay=0.01, report_to=[],
                             use_cpu=True)
    trainer = DistillationTrainer(model=model, args=args, head_learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    head_ids = {id(p) for p in model.head.parameters()}
    seen = 0
    for group in optimizer.param_groups:
        is_head = {id(p) in head_ids for p in group["params"]}
        assert len(is_head) == 1
        assert group["lr"] == (1e-3 if is_head.pop() else 1e-5)
        seen += len(group["params"])
    assert seen == sum(1 for p in model.parameters() if p.requires_grad)

    # None is the official single rate: every parameter at the encoder's
    assert StudentConfig().head_learning_rate == 1e-3  # the default (RESULTS.md, "Student settings tried")
    single = DistillationTrainer(model=model, args=args, head_learning_rate=None).create_optimizer()
    assert {group["lr"] for group in single.param_groups} == {1e-5}


# ---- pipeline -------------------------------------------------------------------------------------


@needs_glue
def test_run_pipeline_end_to_end(tiny_base: str, tmp_path: Path) -> None:
    from dsembed.evaluation import relative_degradation
    from dsembed.pipeline import format_table, run_pipeline

    out = tmp_path / "run"
    cfg = PipelineConfig(task="mrpc", output_dir=str(out),
                         teacher=TeacherConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0),
                         student=StudentConfig(base=tiny_base, epochs=1, batch_size=16, max_length=MAX_LEN, seed=0,
                                               head_learning_rate=1e-3),
                         max_train_pairs=40, max_dev_pairs=20, data_dir=str(glue_dir()), show_progress_bar=False)
    record = run_pipeline(cfg)
    on_disk = json.loads((out / "record.json").read_text())
    assert on_disk["results"] == record["results"]
    assert set(record["results"]) == {"teacher", "dse_student", "label_only_student", "pretrained_cosine"}
    for values in record["results"].values():
        assert set(values) == {"accuracy", "f1", "roc_auc"}
        assert all(0.0 <= v <= 100.0 for v in values.values())
    assert (record["train_pairs"], record["dev_pairs"]) == (40, 20)
    degradation = record["relative_degradation_pct"]
    assert set(degradation) == {"dse_student", "label_only_student", "pretrained_cosine"}
    teacher_f1 = record["results"]["teacher"]["f1"]
    for name, value in degradation.items():  # NaN when the 1-epoch toy teacher has F1 = 0
        expected = relative_degradation(teacher_f1, record["results"][name]["f1"])
        assert value == pytest.approx(expected, nan_ok=True)
    assert record["stages"]["teacher"]["source"] == "trained"
    assert record["stages"]["dse_student"]["training"]["alpha"] == 0.5
    assert record["stages"]["label_only_student"]["training"]["alpha"] == 0.0
    assert record["stages"]["pretrained_cosine"]["threshold"] is not None
    fidelity = record["teacher_fidelity_dev"]
    assert set(fidelity) == {"dse_student", "label_only_student"}
    assert all(f["logit_mse"] >= 0 and 0 <= f["decision_agreement"] <= 100 for f in fidelity.values())
    assert (out / "teacher" / "model" / TEACHER_INFO).is_file()
    assert list((out / "logits_cache").rglob("logits.safetensors"))
    png = out / "student_vs_teacher.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    table = format_table(record)
    for row in ("teacher (cross-encoder)", "DSE student (alpha>0)", "label-only student (alpha=0)",
                "pretrained encoder + cosine", "mrpc dev (20 pairs), trained on 40 pairs"):
        assert row in table

    # a student recorded before dev curves were kept gets its curve back from its checkpoints
    assert [row["epoch"] for row in record["stages"]["dse_student"]["training"]["dev_curve"]] == [1.0]
    training_file = out / "dse_student" / "training.json"
    older = json.loads(training_file.read_text())
    curve = older.pop("dev_curve")
    training_file.write_text(json.dumps(older))
    again = run_pipeline(cfg)
    assert again["stages"]["dse_student"]["source"] == "reused"
    assert again["stages"]["dse_student"]["training"]["dev_curve"] == curve
    teacher_row = next(line for line in table.splitlines() if line.startswith("teacher"))
    assert f"{record['results']['teacher']['f1']:.2f}" in teacher_row

    # a second run reuses every finished stage and reproduces the metrics
    again = run_pipeline(cfg)
    assert again["stages"]["teacher"]["source"] == "reused"
    assert again["stages"]["dse_student"]["source"] == "reused"
    assert again["stages"]["label_only_student"]["source"] == "reused"
    for name in ("teacher", "dse_student", "label_only_student"):
        assert again["results"][name] == pytest.approx(record["results"][name])
    # nor is a finished teacher reused for another number of epochs (the guard itself lets epochs change)
    from dsembed.errors import RunConfigMismatch

    with pytest.raises(RunConfigMismatch, match="teacher holds a model trained for 1 epochs, this run asks for 2"):
        run_pipeline(replace(cfg, teacher=replace(cfg.teacher, epochs=2)))


def test_pipeline_config_round_trips_through_a_record() -> None:
    """benchmarks/rerecord.py and train_fidelity.py rebuild a run's config from its record.json."""
    from dataclasses import asdict

    cfg = PipelineConfig.from_profile("full", task="mine", kind="binary", labels=("no", "yes"), seed=3)
    cfg = replace(cfg, student=replace(cfg.student, head_learning_rate=None))  # None: the official single rate
    assert cfg.teacher.seed == cfg.student.seed == 3
    # records written before the stage configs were composed kept them flat; they still load
    flat = {"task": "mine", "kind": "binary", "labels": ["no", "yes"], "seed": 3, "max_length": None,
            "student_base": "all-MiniLM-L6-v2", "student_epochs": 8.0, "head_learning_rate": None,
            "teacher_base": "all-MiniLM-L6-v2", "teacher_epochs": 3.0, "teacher": None}
    assert PipelineConfig.from_record(flat) == cfg
    stored = json.loads(json.dumps(asdict(cfg)))
    assert stored["labels"] == ["no", "yes"]  # what JSON makes of the tuple
    assert PipelineConfig.from_record(stored) == cfg
    assert PipelineConfig.from_record(stored, output_dir="elsewhere").output_dir == "elsewhere"
