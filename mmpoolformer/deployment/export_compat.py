"""Two defects of the stack under ONNX export, fixed from our side for the duration of an
export (``export_compat``), without touching the installed packages' files.

- mmdet 3.3's box decoding under ONNX export imports ``mmdet.core.export``, a module of
  mmdet 2.x that 3.x no longer ships (``delta2bbox`` of ``DeltaXYWHBBoxCoder``,
  ``TBLRBBoxCoder``, ``structures.bbox.transforms``: a two-stage detector's RPN and RoI
  heads hit it). Exporting fails with "No module named 'mmdet.core'".
- mmseg 1.2's ``Upsample`` module (Semantic FPN's scale heads) computes its output size
  with ``int(size * scale_factor)``: the tracer records a constant, so a graph exported
  with dynamic height and width gives wrong results at any other size.
"""
import contextlib
import sys
import types

import torch.nn.functional as F


def dynamic_clip_for_onnx(x1, y1, x2, y2, max_shape):
    """Clip box corners to the image, (H, W) = max_shape[:2] (a tuple or a tensor): what
    mmdet 3.x does outside export, written with out-of-place clamps for the tracer."""
    h, w = max_shape[0], max_shape[1]
    return x1.clamp(0, w), y1.clamp(0, h), x2.clamp(0, w), y2.clamp(0, h)


@contextlib.contextmanager
def _mmdet_core_export():
    """``mmdet.core.export.dynamic_clip_for_onnx`` importable inside the block."""
    names = ('mmdet.core', 'mmdet.core.export')
    if all(name in sys.modules for name in names):  # already there (nested use, mmdet 2)
        yield
        return
    core = types.ModuleType('mmdet.core')
    export = types.ModuleType('mmdet.core.export')
    export.dynamic_clip_for_onnx = dynamic_clip_for_onnx
    core.export = export
    sys.modules.update({'mmdet.core': core, 'mmdet.core.export': export})
    try:
        yield
    finally:
        for name in names:
            sys.modules.pop(name, None)


def _traceable_upsample(module):
    """mmseg ``Upsample.forward`` with the output size kept symbolic (integer factors)."""
    factor = module.scale_factor

    def forward(x):
        size = (x.shape[-2] * int(factor), x.shape[-1] * int(factor))
        return F.interpolate(x, size, None, module.mode, module.align_corners)
    return forward


@contextlib.contextmanager
def export_compat(model):
    """Apply both fixes to ``model`` (and mmdet's namespace) inside the block."""
    patched = []
    try:
        from mmseg.models.utils import Upsample
    except ImportError:
        Upsample = ()
    for module in model.modules():
        factor = getattr(module, 'scale_factor', None)
        if isinstance(module, Upsample) and not module.size and isinstance(factor, float) \
                and factor.is_integer():
            module.forward = _traceable_upsample(module)
            patched.append(module)
    try:
        with _mmdet_core_export():
            yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
