"""benchmarks/carry_weights.py: weights split into parts and reassembled exactly."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_carry_weights_round_trip_is_exact_and_verified(tmp_path: Path) -> None:
    import hashlib

    import torch
    from safetensors.torch import save_file

    torch.manual_seed(0)
    save_file({"a.weight": torch.randn(64, 33), "b.bias": torch.randn(7)}, str(tmp_path / "model.safetensors"))
    raw = (tmp_path / "model.safetensors").read_bytes()
    script = [sys.executable, str(ROOT / "benchmarks" / "carry_weights.py")]
    subprocess.run([*script, "pack", tmp_path / "model.safetensors", tmp_path / "parts", "--part-mib", "0.002",
                    "--first-part-mib", "0.001"], check=True, capture_output=True)
    parts = sorted((tmp_path / "parts").glob("part*/blob"))
    assert len(parts) > 2 and max(p.stat().st_size for p in parts) <= int(0.002 * (1 << 20))
    digest = hashlib.sha256(raw).hexdigest()
    subprocess.run([*script, "unpack", tmp_path / "parts", tmp_path / "out.safetensors", "--sha256", digest],
                   check=True, capture_output=True)
    assert (tmp_path / "out.safetensors").read_bytes() == raw
    bad = subprocess.run([*script, "unpack", tmp_path / "parts", tmp_path / "bad.safetensors", "--sha256", "0" * 64],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "sha256 mismatch" in bad.stderr
    assert not (tmp_path / "bad.safetensors").exists()
