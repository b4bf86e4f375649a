"""``dsembed augment score --ray local``: the Ray pool fills the same per-pair store the single-process path reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from conftest import MRPC, synthetic_pairs
from dsembed.augment import load_mined_bundle, mine_pairs, score_mined
from dsembed.cli import app
from dsembed.teacher import Teacher

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow  # starts a local Ray (tens of seconds on a 2-core machine)


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()


def test_ray_scores_only_what_the_store_lacks(binary_teacher: Path, tmp_path: Path) -> None:
    mined = mine_pairs(synthetic_pairs(MRPC, 20, seed=4), strategies=["random", "swap"], per_sentence=1)
    mined_file = mined.save(tmp_path / "mined.jsonl")
    teacher = Teacher(binary_teacher, MRPC, device="cpu")
    score_mined(teacher, mined.select(np.arange(10)), cache=tmp_path / "store")  # a first, smaller run
    result = CliRunner().invoke(app, ["augment", "score", str(mined_file), "--teacher", str(binary_teacher), "-o",
                                      str(tmp_path / "bundle"), "--cache", str(tmp_path / "store"), "--task", "mrpc",
                                      "--chunk-size", "8", "--ray", "local", "--ray-workers", "1"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["reused_from_store"] == 10
    assert summary["scored_now"] == len(mined) - 10
    scored = load_mined_bundle(tmp_path / "bundle", mined)
    np.testing.assert_allclose(scored.teacher_logits, teacher.predict_logits(mined.pairs.pairs()), atol=1e-5)
