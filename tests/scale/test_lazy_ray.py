"""Ray is an optional extra: nothing imports it until a Ray job runs, and without it the job says what to install."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_dsembed_and_its_cli_import_without_ray() -> None:
    done = _python("import sys, dsembed, dsembed.cli, dsembed.scale, dsembed.scale.ray_pool\n"
                   "assert 'ray' not in sys.modules, 'ray was imported'\n"
                   "assert dsembed.scale.__all__")
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_ray_job_without_ray_is_a_one_line_error() -> None:
    done = _python("import sys\nsys.modules['ray'] = None  # as if Ray were not installed\n"
                   "from dsembed.errors import ConfigError\nfrom dsembed.scale import ray_session\n"
                   "try:\n    ray_session().__enter__()\nexcept ConfigError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install 'dsembed[ray]'" in done.stdout


@pytest.mark.parametrize("bad", [{"concurrency": 0}, {"num_cpus": 0}, {"num_gpus": -1}])
def test_ray_options_are_checked(bad: dict) -> None:
    from dsembed.errors import ConfigError
    from dsembed.scale import RayOptions

    with pytest.raises(ConfigError):
        RayOptions(**bad)
