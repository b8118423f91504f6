"""ONNX export of backbones and whole models, and running the result in onnxruntime.

Under export the kernels layer takes its plain reference ops (``models/kernels``), so the
graph holds standard ONNX operators only (no custom ops, no oneDNN calls).
"""
import warnings
from typing import List, Optional, Sequence

import torch

from .. import compat


def flatten_outputs(outputs) -> List[torch.Tensor]:
    """The tensors of a (nested) tuple/list/dict of outputs, in order."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, dict):
        outputs = list(outputs.values())
    return [t for item in outputs for t in flatten_outputs(item)]


class _Flat(torch.nn.Module):
    """A model whose (nested) outputs are returned as one flat tuple."""

    def __init__(self, model, forward=None):
        super().__init__()
        self.model = model
        self.fn = forward or model

    def forward(self, x):
        return tuple(flatten_outputs(self.fn(x)))


def export_onnx(model: torch.nn.Module, example: torch.Tensor, path: str,
                dynamic: bool = True, opset: int = 17, dynamo: bool = False,
                forward=None) -> List[str]:
    """Export ``model`` (or ``forward``, a callable of the image batch) to ``path``.

    The input is named ``input``; the flattened outputs ``output0``, ``output1``, ...
    With ``dynamic``, batch, height and width of the input (and the matching axes of the
    outputs) are dynamic. Returns the output names. ``dynamo``: torch.export's exporter
    (torch >= 2.7), else the TorchScript one (every supported torch).
    """
    flat = _Flat(model, forward).eval()
    with torch.no_grad():
        ranks = [t.dim() for t in flat(example)]
    names = [f'output{i}' for i in range(len(ranks))]
    kwargs = dict(input_names=['input'], output_names=names, opset_version=opset)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')  # tracer warnings about shape arithmetic
        if dynamo:
            shapes = None
            if dynamic:
                batch, height, width = (torch.export.Dim.AUTO, ) * 3
                shapes = {'x': {0: batch, 2: height, 3: width}}
            compat.onnx_export(flat, (example, ), path, dynamo=True, dynamic_shapes=shapes,
                               **kwargs)
        else:
            axes = None
            if dynamic:
                axes = {'input': {0: 'batch', 2: 'height', 3: 'width'}}
                for i, (name, rank) in enumerate(zip(names, ranks)):
                    axes[name] = {0: 'batch', 2: f'height{i}', 3: f'width{i}'} if rank == 4 \
                        else {0: 'batch'}
            compat.onnx_export(flat, (example, ), path, dynamo=False, dynamic_axes=axes,
                               **kwargs)
    return names


def onnxruntime_outputs(path: str, x: torch.Tensor,
                        providers: Optional[Sequence[str]] = None) -> List[torch.Tensor]:
    """Run the exported model at ``path`` on ``x`` in onnxruntime (CPU by default)."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=list(providers or
                                                        ['CPUExecutionProvider']))
    outs = session.run(None, {session.get_inputs()[0].name: x.detach().cpu().numpy()})
    return [torch.from_numpy(o) for o in outs]


# Operators that only move, reshape or pass data on (or hold constants): layout and shape
# plumbing that ONNX Runtime and TensorRT fold or fuse away.
PLUMBING_OPS = frozenset({'Identity', 'Constant', 'ConstantOfShape', 'Shape', 'Gather',
                          'Unsqueeze', 'Squeeze', 'Concat', 'Reshape', 'Transpose', 'Cast',
                          'Slice', 'Expand'})


def count_nodes(path: str, compute_only: bool = True) -> int:
    """Nodes of the exported graph; ``compute_only``: those that compute (not plumbing)."""
    import onnx
    graph = onnx.load(path).graph
    skip = PLUMBING_OPS if compute_only else {'Constant'}
    return sum(node.op_type not in skip for node in graph.node)
