"""Fixtures of the retrieval tests: a tiny random student and a store over 150 candidates (one per module)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _retrieval_data import CANDIDATES

from _tiny import tiny_student
from dsembed.retrieval import CandidateStore, build_store


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
