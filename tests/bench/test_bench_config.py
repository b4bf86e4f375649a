"""Bench settings a user can get wrong fail at once, in one line naming the setting, before any work is done."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dsembed.bench import BenchConfig, run_bench
from dsembed.errors import ConfigError, InputNotFoundError


def _folders(tmp_path: Path) -> dict[str, str]:
    return {"output": str(tmp_path / "out"), "work_dir": str(tmp_path / "work")}


@pytest.mark.parametrize(("changes", "match"), [
    ({"sizes": ()}, "at least one candidate count"),
    ({"sizes": (1000, 1000)}, "each candidate count once"),
    ({"sizes": (0, 10)}, r"sizes: positive whole numbers only, got \[0\]"),
    ({"prefilters": (100, -5)}, r"prefilters: positive whole numbers only, got \[-5\]"),
    ({"queries": 0}, "queries must be a whole number >= 1"),
    ({"threads": -1}, "threads must be a whole number >= 0"),
    ({"encode_repeats": 1.5}, "encode_repeats must be a whole number"),
    ({"real_sentences": 3, "queries": 5}, "every query's paraphrase goes into the store"),
    ({"prefilter_kinds": ("hnsw",)}, r"prefilter_kinds: unknown \['hnsw'\]"),
    ({"rerank_precisions": ("fp16",)}, r"rerank_precisions: unknown \['fp16'\]"),
])
def test_bad_settings_are_refused_before_any_work(tmp_path: Path, changes: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match) as err:
        run_bench(BenchConfig(**_folders(tmp_path), **changes))
    assert "\n" not in str(err.value)
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_a_missing_student_or_glue_folder_is_named(tmp_path: Path) -> None:
    (tmp_path / "not-a-student").mkdir()
    for model in ("missing", "not-a-student"):
        with pytest.raises(InputNotFoundError, match=f"bench model .*{model}: not a dsembed student folder"):
            run_bench(BenchConfig(model=str(tmp_path / model), **_folders(tmp_path)))
    with pytest.raises(InputNotFoundError, match="bench GLUE folder .*no-glue: no such folder"):
        run_bench(BenchConfig(glue_dir=str(tmp_path / "no-glue"), **_folders(tmp_path)))
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_a_teacher_transformers_cannot_load_is_named(tmp_path: Path) -> None:
    from dsembed.bench.measure import load_teacher
    from dsembed.tasks import get_task

    with pytest.raises(InputNotFoundError, match="bench teacher .*nope: not a local model folder") as err:
        load_teacher(BenchConfig(teacher=str(tmp_path / "nope")), get_task("mrpc"), 32)
    assert "\n" not in str(err.value)
