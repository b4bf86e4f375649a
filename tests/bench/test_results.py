"""RESULTS.md is generated from the records, and its target verdicts follow from them."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def make_results() -> Any:
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "scripts" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_results_md_is_what_the_records_give() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_results.py"), "--check"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def _record(task: str, dse: float, label_only: float, teacher: float, seed: int = 42, epochs: float = 3.0) -> dict:
    main = {"mrpc": "f1", "rte": "accuracy", "stsb": "spearman"}[task]
    return {"task": task, "main_metric": main,
            "config": {"learning_rate": 2e-5, "head_learning_rate": 1e-3, "student_epochs": epochs, "alpha": 0.5,
                       "seed": seed},
            "results": {"teacher": {main: teacher}, "dse_student": {main: dse},
                        "label_only_student": {main: label_only}},
            "relative_degradation_pct": {"dse_student": 100 * (teacher - dse) / teacher},
            "stages": {}}


def test_targets_are_judged_on_seed_means(make_results: Any) -> None:
    records = [_record("mrpc", 90, 89, 100), _record("mrpc", 88, 90, 100, seed=43),  # mean 89 < 89.5: a loss
               _record("rte", 95, 90, 100), _record("stsb", 99, 98, 100)]
    row = next(line for line in make_results.settings_summary(records) if line.startswith("| lr"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[1:4] == ["89.00 / 89.50 (2)", "95.00 / 90.00 (1)", "99.00 / 98.00 (1)"]
    assert cells[4] == "no"
    assert float(cells[5]) == pytest.approx((11 + 5 + 1) / 3, abs=0.01)
    # a setting not run on every task gets no verdict
    partial = make_results.settings_summary([*records, _record("mrpc", 95, 90, 100, epochs=8)])
    row8 = next(line for line in partial if "8 epochs" in line)
    assert "not run on every task" in row8 and row8.rstrip().endswith("| – |")


def test_a_sweep_that_is_the_default_run_is_listed_once(make_results: Any, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    for folder, rec in (("full/mrpc", _record("mrpc", 90, 89, 100)),
                        ("sweeps/mrpc-same-as-default", _record("mrpc", 90, 89, 100)),
                        ("sweeps/mrpc-seed-43", _record("mrpc", 88, 90, 100, seed=43))):
        (tmp_path / folder).mkdir(parents=True)
        (tmp_path / folder / "record.json").write_text(json.dumps(rec))
    monkeypatch.setattr(make_results, "RESULTS", tmp_path)
    rows = [line for line in make_results.sweeps_section() if line.startswith("| mrpc |")]
    assert [row.split("|")[2].strip() for row in rows] == ["defaults (the full-size run above)", "seed-43"]
