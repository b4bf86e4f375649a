"""The speed benchmark's backend rows: the torch student's encoding throughput against its ONNX export.

The student is exported (fp32 + int8) into the bench's work folder, reused by a later run of the same model,
and every backend encodes the same sentences at the same batch size, taking turns within each repeat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..artifacts import ONNX_INFO

BENCH_BACKENDS = ("torch", "onnx", "onnx-int8")


def measure_backends(model: Any, backends: tuple[str, ...], sentences: list[str], batch_size: int, repeats: int,
                     work: Path) -> dict[str, Any]:
    """Sentences/s of ``model`` (torch) and of its ONNX graphs, with their differences from torch."""
    from ..export import compare_models, export_onnx, time_encoders
    from ..retrieval import model_fingerprint
    from ..student import DSEModel

    folder = work / f"onnx-{model_fingerprint(model)[:12]}"
    info = json.loads((folder / ONNX_INFO).read_text()) if (folder / ONNX_INFO).is_file() else {}
    if "int8" not in info.get("encoder", {}):
        export_onnx(model, folder, quantize="int8")
        info = json.loads((folder / ONNX_INFO).read_text())
    models: dict[str, Any] = {"torch": model}
    for name in backends:
        if name != "torch":
            models[name] = DSEModel.load(folder, backend="onnx", quantized=name == "onnx-int8")
    timing = time_encoders(models, sentences, batch_size=batch_size, repeats=repeats)
    base = timing["torch"]["sentences_per_s_median"]
    for name, entry in timing.items():
        entry["speedup_over_torch"] = entry["sentences_per_s_median"] / base
        if name != "torch":
            entry["vs_torch"] = compare_models(model, models[name], sentences[:256])
    return {"export": str(folder), "opset": info["opset"], "backends": timing}
