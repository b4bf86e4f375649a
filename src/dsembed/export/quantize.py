"""int8 dynamic quantisation of the exported encoder graph (onnxruntime's ``quantize_dynamic``).

Weights become int8 (per output channel by default: one scale per row of every MatMul weight, which keeps
the embeddings several times closer to fp32 than one scale per tensor at the same speed); activations are
quantised to uint8 on the fly, per tensor, at every MatMul. Only MatMuls are quantised: they hold nearly
all the compute. The head stays fp32: it costs a few hundred thousand multiply-adds per pair, so int8 would
buy no speed and only add error to the scores.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..student.onnx_backend import file_sha256


class _DropPreprocessHint(logging.Filter):
    """onnxruntime logs a hint to run its pre-processing on every call, on the root logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing before quantization" not in record.getMessage()


def quantize_encoder(src: Path, dst: Path, per_channel: bool = True) -> dict[str, Any]:
    """Write the int8 copy of the ``src`` encoder graph to ``dst``; its entry for ``dsembed_onnx.json``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    hint = _DropPreprocessHint()
    logging.getLogger().addFilter(hint)
    try:
        quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=per_channel,
                         op_types_to_quantize=["MatMul"],
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    finally:
        logging.getLogger().removeFilter(hint)
    return {"file": dst.name, "sha256": file_sha256(dst),
            "quantization": {"method": "onnxruntime.quantization.quantize_dynamic", "weights": "int8 (QInt8)",
                             "per_channel": per_channel, "activations": "uint8, dynamic, per tensor",
                             "op_types": ["MatMul"], "head": "fp32 (not quantised)"}}
