"""Deploy a student without PyTorch: ONNX graphs of the encoder (with its pooling) and of the pair head.

``export_onnx`` writes them (fp32, optionally int8); ``DSEModel.load(path, backend="onnx")`` runs them;
``compare_models`` and ``time_encoders`` measure one backend against another.
"""

from .compare import compare_models, differences, time_encoders
from .onnx_export import DEFAULT_OPSET, FORMATS, QUANTIZATIONS, check_options, export_onnx

__all__ = ["DEFAULT_OPSET", "FORMATS", "QUANTIZATIONS", "check_options", "compare_models", "differences",
           "export_onnx", "time_encoders"]
