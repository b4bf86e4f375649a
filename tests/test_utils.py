"""Run-config guard and atomic writes: the pieces that keep resumed work honest."""

from __future__ import annotations

from pathlib import Path

import pytest

from dsembed.errors import RunConfigMismatch
from dsembed.training import check_run_config
from dsembed.utils import atomic_dir, atomic_write_json


def test_check_run_config_records_then_refuses_other_settings(tmp_path: Path) -> None:
    check_run_config(tmp_path, {"alpha": 0.5, "train": "abc"})
    check_run_config(tmp_path, {"alpha": 0.5, "train": "abc"})  # same settings: resumable
    with pytest.raises(RunConfigMismatch, match="alpha"):
        check_run_config(tmp_path, {"alpha": 0.0, "train": "abc"})
    with pytest.raises(RunConfigMismatch, match="train"):
        check_run_config(tmp_path, {"alpha": 0.5, "train": "other"})


def test_atomic_dir_keeps_old_content_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("old")
    with pytest.raises(RuntimeError), atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("half-written")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no temp folders left behind


def test_atomic_write_json_round_trip(tmp_path: Path) -> None:
    import json

    atomic_write_json(tmp_path / "x.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "x.json").read_text()) == {"a": [1, 2], "b": 1}


def test_atomic_write_gives_the_mode_open_would_and_leaves_the_umask_alone(tmp_path: Path) -> None:
    import os
    import stat

    from dsembed.utils import atomic_write_bytes

    previous = os.umask(0o027)
    try:
        atomic_write_bytes(tmp_path / "f.bin", b"x")
        assert stat.S_IMODE((tmp_path / "f.bin").stat().st_mode) == 0o640
        assert os.umask(0o027) == 0o027  # still what we set: the write did not touch it
    finally:
        os.umask(previous)
