"""ONNX export of the deployment (fused) form: :class:`ExportOptions` say what and where, :func:`export_onnx`
writes it (``patsearch export``)."""
from patsearch.export.onnx_export import export_onnx, load_weights, read_checkpoint
from patsearch.export.options import DEFAULT_OPSET, DYNAMO_MIN_OPSET, MIN_OPSET, ExportOptions, ExportOptionsError

__all__ = ["DEFAULT_OPSET", "DYNAMO_MIN_OPSET", "MIN_OPSET", "ExportOptions", "ExportOptionsError", "export_onnx",
           "load_weights", "read_checkpoint"]
