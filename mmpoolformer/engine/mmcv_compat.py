"""Two limits of mmcv 2.1's compiled ops, fixed from the outside when mmpoolformer is imported.

1. RoIAlign reads its features through ``data_ptr()`` as contiguous NCHW, whatever their
   strides: channels-last features (``out_channels_last=True`` backbones, channels-last
   necks, the official MetaFormer baselines' outputs) would be pooled scrambled, silently.
   Its forward gets a contiguous tensor (the same object when it already is one).
2. Its CPU kernels of NMS and RoIAlign take float32 only; under bf16 autocast on the CPU
   (``tools/train.py --amp``: ``mmpoolformer.AmpCPUOptimWrapper``; inference under
   ``torch.autocast``) a detector hands them bf16 tensors: mmdet's RPN and RoI heads build
   their anchors, boxes and scores in the features' dtype, and its RoI extractors pass
   bf16 features. Without the fix, training a two-stage detector stops with "expected
   scalar type Float but found BFloat16" in NMS, and "ROIAlign_backward" not implemented
   for 'BFloat16'.

``install_mmcv_compat`` lets these ops run on such tensors, as torchvision's own ``nms`` and
``roi_align`` do under CPU autocast (https://github.com/pytorch/vision/pull/8049): the
kernel runs on float32 copies of its inputs, NMS returns the same indices (its callers
gather the boxes and scores from their own tensors, in their own dtype), and RoIAlign
returns its features, and its backward the input's gradient, in the input's dtype (as its
CUDA kernel does with fp16). Only CPU tensors of bf16 or fp16 are touched: those are the
inputs the kernels refuse, so nothing that runs without the fix changes (CUDA, fp32,
float64, other devices).

The casts are put into the autograd Functions' ``forward`` (and RoIAlign's ``backward``),
which every caller reaches whatever it imported: ``mmcv.ops.roi_align.roi_align`` is
``RoIAlignFunction.apply`` bound when mmcv is imported, and mmdet's mask targets import
it by name, so wrapping ``apply`` or the module-level functions would miss callers.
"""
import functools

import torch

_REFUSED = (torch.bfloat16, torch.float16)


def _refused(*tensors) -> bool:
    """Whether an mmcv CPU kernel would refuse one of these tensors' dtype."""
    return any(t.device.type == 'cpu' and t.dtype in _REFUSED for t in tensors)


def fp32_nms_forward(forward):
    """``NMSop.forward`` running the kernel on float32 boxes and scores when they are
    low-precision CPU tensors; it returns indices, whatever the inputs' dtype."""
    @functools.wraps(forward)
    def nms_forward(ctx, bboxes, scores, *args, **kwargs):
        if _refused(bboxes, scores):
            bboxes, scores = bboxes.float(), scores.float()
        return forward(ctx, bboxes, scores, *args, **kwargs)
    return nms_forward


def fp32_roi_align_forward(forward):
    """``RoIAlignFunction.forward`` on contiguous features, running the kernel on float32
    features and RoIs when either is a low-precision CPU tensor; the features come back in
    the input's dtype."""
    @functools.wraps(forward)
    def roi_align_forward(ctx, input, rois, *args, **kwargs):
        input = input.contiguous()  # the kernel ignores strides (see the module's 1.)
        ctx.mmcv_compat_dtype = None
        if not _refused(input, rois):
            return forward(ctx, input, rois, *args, **kwargs)
        ctx.mmcv_compat_dtype = input.dtype
        return forward(ctx, input.float(), rois.float(), *args, **kwargs).to(input.dtype)
    return roi_align_forward


def fp32_roi_align_backward(backward):
    """``RoIAlignFunction.backward`` for a forward that ran in float32 for a low-precision
    input: the kernel gets a float32 gradient, the input's gradient returns in its dtype."""
    @functools.wraps(backward)
    def roi_align_backward(ctx, grad_output):
        dtype = getattr(ctx, 'mmcv_compat_dtype', None)
        if dtype is None:
            return backward(ctx, grad_output)
        grad_input, *rest = backward(ctx, grad_output.float())
        return (None if grad_input is None else grad_input.to(dtype), *rest)
    return roi_align_backward


_PATCHES = (
    ('mmcv.ops.nms', 'NMSop', 'forward', fp32_nms_forward),
    ('mmcv.ops.roi_align', 'RoIAlignFunction', 'forward', fp32_roi_align_forward),
    ('mmcv.ops.roi_align', 'RoIAlignFunction', 'backward', fp32_roi_align_backward),
)


def install_mmcv_compat() -> None:
    """Wrap mmcv's NMS and RoIAlign autograd Functions (once; nothing without mmcv's ops)."""
    import importlib
    import sys
    for module_name, class_name, method, wrap in _PATCHES:
        try:
            # ``importlib``: ``mmcv.ops.nms`` as an attribute is the function, not the module.
            importlib.import_module(module_name)
        except ImportError:  # mmcv without its compiled ops: nothing to fix
            return
        cls = getattr(sys.modules[module_name], class_name)
        original = cls.__dict__[method].__func__
        if not getattr(original, 'mmcv_compat', False):
            wrapped = wrap(original)
            wrapped.mmcv_compat = True
            setattr(cls, method, staticmethod(wrapped))
