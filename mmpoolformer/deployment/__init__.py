from .onnx import PLUMBING_OPS, count_nodes, export_onnx, flatten_outputs, onnxruntime_outputs

__all__ = ['PLUMBING_OPS', 'export_onnx', 'onnxruntime_outputs', 'count_nodes', 'flatten_outputs']
