"""Defects of the stack under ONNX export, fixed from our side for the duration of an
export (``export_compat``), without touching the installed packages' files.

- mmdet 3.3's box decoding under ONNX export imports ``mmdet.core.export``, a module of
  mmdet 2.x that 3.x no longer ships (``delta2bbox`` of ``DeltaXYWHBBoxCoder``,
  ``TBLRBBoxCoder``, ``structures.bbox.transforms``: a two-stage detector's RPN and RoI
  heads hit it). Exporting fails with "No module named 'mmdet.core'".
- mmseg 1.2's ``Upsample`` module (Semantic FPN's scale heads) computes its output size
  with ``int(size * scale_factor)``: the tracer records a constant, so a graph exported
  with dynamic height and width gives wrong results at any other size.

A two-stage detector's tensor mode (``TwoStageDetector._forward``: the RPN's proposals,
NMS included, then the RoI head on them) has five more (``_two_stage_fixes``):

- onnxruntime 1.32's CPU ``Sigmoid`` is accurate to ~6e-8 absolute, not relative: it
  returns 0 for every input below -18 (PyTorch: 1.5e-8 at -18, 2e-9 at -20), 3e-8 at -17.5
  (2.5e-8), and is 2e-4 off relative at -10. The RPN ranks its proposals by sigmoid
  scores, which after some training go far below that (level cut-offs near 1e-10 after 30
  iterations on the quickstart data): onnxruntime then sees thousands of equal scores and
  picks other anchors. Fixed by exporting ``aten::sigmoid`` as ``1 / (1 + exp(-x))``
  (within 2.4e-7 relative of PyTorch's down to underflow in onnxruntime).
- mmcv 2.1's ``NMSop`` has no ONNX translation (mmcv 2 left ONNX to mmdeploy): the
  exporter inlines it, its C++ kernel is invisible to the tracer, and the indices it kept
  for the export input are recorded as a constant. The graph then gathers those same
  positions for any image. Fixed by an ``NMSop.symbolic``: ONNX ``NonMaxSuppression``.
- mmcv 2.1's ``RoIAlignFunction.symbolic`` writes ``aligned=True`` (mmdet's default) for
  opset 11 as ``RoiAlign`` on boxes shifted by half a pixel; but that opset's RoiAlign
  (no ``coordinate_transformation_mode`` before opset 16) then widens every box narrower
  or lower than one feature pixel to one pixel, which the aligned kernel does not, so
  the features of thin proposals differ. It also uses the opset-11 form of ``Squeeze``,
  so it cannot export at opset 13 and above. Fixed by a symbolic for opset 16 and above
  with ``coordinate_transformation_mode='half_pixel'``: the kernel's formula.
- mmdet 3.3's ``SingleRoIExtractor.forward`` runs a level's RoIAlign only
  ``if inds.numel() > 0``: the tracer keeps only the levels that got proposals for the
  export input, and proposals of any other level get zero features.
- mmdet 3.3's ``RPNHead._bbox_post_process`` drops boxes of at most ``min_bbox_size``
  only ``if not valid_mask.all()``: for an export input without such boxes the filter is
  left out of the graph.
"""
import contextlib
import copy
import sys
import types

import torch
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


# ---------------------------------------------------------------- two-stage detectors

def _const(g, value, dtype=torch.int64):
    return g.op('Constant', value_t=torch.tensor(value, dtype=dtype))


def nms_symbolic(g, boxes, scores, iou_threshold, offset, score_threshold, max_num):
    """ONNX for mmcv's ``NMSop`` (``nms_cpu``): the indices of the kept boxes, best first.

    The kernel visits the boxes in ``scores.sort(descending=True)`` order and drops each
    box whose IoU with a kept one is ``> iou_threshold``; ONNX ``NonMaxSuppression`` does
    the same (the same IoU formula, in float32, and ``>``), but its order among equal
    scores is the runtime's. So the graph sorts first (``TopK``: equal scores by index)
    and gives NonMaxSuppression strictly decreasing stand-in scores (-1, -2, ...): it
    visits the boxes in that order and returns the kept ones in it. (The kernel orders
    equal scores as PyTorch's CPU ``sort``, which is not stable: no graph reproduces that;
    for distinct scores the kept indices are the kernel's, in its order.)
    """
    if offset != 0 or score_threshold > 0:
        raise NotImplementedError(f'mmcv nms with offset={offset}, score_threshold='
                                  f'{score_threshold}: no ONNX translation here')
    count = g.op('Shape', scores)  # [N]
    _, order = g.op('TopK', scores, count, axis_i=0, largest_i=1, sorted_i=1, outputs=2)
    ranked = g.op('Gather', boxes, order, axis_i=0)
    ones = g.op('ConstantOfShape', count, value_t=torch.tensor([1.0]))
    stand_in = g.op('Neg', g.op('CumSum', ones, _const(g, 0)))
    selected = g.op('NonMaxSuppression',
                    g.op('Reshape', ranked, _const(g, [1, -1, 4])),
                    g.op('Reshape', stand_in, _const(g, [1, 1, -1])),
                    _const(g, [max_num if max_num > 0 else 2**31 - 1]),
                    _const(g, [float(iou_threshold)], torch.float32))
    positions = g.op('Gather', selected, _const(g, 2), axis_i=1)  # (K, 3) -> (K,)
    return g.op('Gather', order, positions, axis_i=0)


def sigmoid_symbolic(g, x):
    """``1 / (1 + exp(-x))``: relative accuracy where onnxruntime's Sigmoid has none."""
    one = g.op('Constant', value_t=torch.tensor(1.0))
    return g.op('Reciprocal', g.op('Add', one, g.op('Exp', g.op('Neg', x))))


def roi_align_symbolic(g, input, rois, output_size, spatial_scale, sampling_ratio,
                       pool_mode, aligned):
    """ONNX ``RoiAlign`` for mmcv's ``RoIAlignFunction``; ``aligned`` needs opset 16."""
    extra = {}
    if g.opset >= 16:
        extra['coordinate_transformation_mode_s'] = \
            'half_pixel' if aligned else 'output_half_pixel'
    elif aligned:
        raise RuntimeError('RoIAlign(aligned=True) exports faithfully from opset 16 on '
                           '(RoiAlign coordinate_transformation_mode): use --opset 16+')
    batch_indices = g.op('Cast', g.op('Gather', rois, _const(g, 0), axis_i=1),
                         to_i=7)  # INT64
    boxes = g.op('Gather', rois, _const(g, [1, 2, 3, 4]), axis_i=1)
    return g.op('RoiAlign', input, boxes, batch_indices, output_height_i=output_size[0],
                output_width_i=output_size[1], spatial_scale_f=spatial_scale,
                sampling_ratio_i=max(0, sampling_ratio), mode_s=pool_mode, **extra)


def _all_levels_roi_extractor(module):
    """mmdet ``SingleRoIExtractor.forward`` with every level's RoIAlign in the graph (no
    ``if inds.numel() > 0``; the other branch only adds zeros), the per-level results put
    back in RoI order by a gather (an indexed assignment exports with the trace's shapes
    and fails for a level with no RoI)."""
    def forward(feats, rois, roi_scale_factor=None):
        rois = rois.type_as(feats[0])
        num_levels = len(feats)
        if num_levels == 1:
            return module.roi_layers[0](feats[0], rois)
        target_lvls = module.map_roi_levels(rois, num_levels)
        if roi_scale_factor is not None:
            rois = module.roi_rescale(rois, roi_scale_factor)
        order, parts = [], []
        for i in range(num_levels):
            inds = (target_lvls == i).nonzero(as_tuple=False).squeeze(1)
            parts.append(module.roi_layers[i](feats[i], rois[inds]))
            order.append(inds)
        return torch.cat(parts)[torch.cat(order).argsort()]
    return forward


def _always_filtered_rpn(head):
    """mmdet ``RPNHead._bbox_post_process`` with its small-box filter always in the graph
    (the original skips it when no box is that small; dropping nothing is the same)."""
    original = head._bbox_post_process

    def post_process(results, cfg, rescale=False, with_nms=True, img_meta=None):
        if not rescale and cfg.get('min_bbox_size', -1) >= 0:
            from mmdet.structures.bbox import get_box_wh
            w, h = get_box_wh(results.bboxes)
            results = results[(w > cfg.min_bbox_size) & (h > cfg.min_bbox_size)]
            cfg = copy.deepcopy(cfg)
            cfg.min_bbox_size = -1
        return original(results, cfg, rescale=rescale, with_nms=with_nms,
                        img_meta=img_meta)
    return post_process


@contextlib.contextmanager
def _two_stage_fixes(model):
    try:
        from mmcv.ops.nms import NMSop
        from mmcv.ops.roi_align import RoIAlignFunction
        from mmdet.models.dense_heads import RPNHead
        from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    except ImportError:
        yield []
        return
    patched = []
    for module in model.modules():
        if isinstance(module, SingleRoIExtractor):
            module.forward = _all_levels_roi_extractor(module)
            patched.append((module, 'forward'))
        elif isinstance(module, RPNHead):
            module._bbox_post_process = _always_filtered_rpn(module)
            patched.append((module, '_bbox_post_process'))
    saved = [(cls, cls.__dict__.get('symbolic')) for cls in (NMSop, RoIAlignFunction)]
    NMSop.symbolic = staticmethod(nms_symbolic)
    RoIAlignFunction.symbolic = staticmethod(roi_align_symbolic)
    torch.onnx.register_custom_op_symbolic('aten::sigmoid', sigmoid_symbolic, 9)
    try:
        yield patched
    finally:
        torch.onnx.unregister_custom_op_symbolic('aten::sigmoid', 9)
        for cls, symbolic in saved:
            if symbolic is None:
                del cls.symbolic
            else:
                cls.symbolic = symbolic
        for module, name in patched:
            delattr(module, name)  # back to the class's method


@contextlib.contextmanager
def export_compat(model):
    """Apply the fixes to ``model`` (and mmdet's and mmcv's namespaces) inside the block."""
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
        with _mmdet_core_export(), _two_stage_fixes(model):
            yield
    finally:
        for module in patched:
            del module.forward  # back to the class's forward
