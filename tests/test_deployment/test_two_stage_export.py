"""What a two-stage detector's tensor mode needs to export faithfully: mmcv's NMS and
RoIAlign as ONNX operators with the kernels' semantics, every RoI level in the graph, a
sigmoid that onnxruntime computes to relative precision (the RPN ranks by it)
(``deployment/export_compat.py``). Each test fails without its fix."""
import warnings

import pytest
import torch

from mmpoolformer import compat
from mmpoolformer.deployment.export_compat import export_compat

pytest.importorskip('onnxruntime', reason='onnx and onnxruntime are in the test extras')
ops = pytest.importorskip('mmcv.ops', reason='mmcv with compiled ops')


def export(module, inputs, path, names, dynamic):
    with export_compat(module), warnings.catch_warnings():
        warnings.simplefilter('ignore')
        compat.onnx_export(module, inputs, path, opset_version=17, dynamo=False,
                           input_names=names, dynamic_axes={n: {0: 'n'} for n in dynamic})


def run_onnx(path, *inputs):
    """The outputs of the ONNX model at ``path`` in onnxruntime (CPU)."""
    import onnxruntime as ort
    session = ort.InferenceSession(path, providers=['CPUExecutionProvider'])
    names = [i.name for i in session.get_inputs()]
    return [torch.from_numpy(o) for o in
            session.run(None, {n: t.numpy() for n, t in zip(names, inputs)})]


def random_boxes(n, gen):
    xy = torch.rand(n, 2, generator=gen) * 100
    return torch.cat([xy, xy + 1 + torch.rand(n, 2, generator=gen) * 30], 1)


class BatchedNMS(torch.nn.Module):
    def forward(self, boxes, scores, idxs):
        return ops.batched_nms(boxes, scores, idxs, dict(type='nms', iou_threshold=0.7))


def test_nms_is_an_onnx_operator_with_the_kernels_choices(tmp_path):
    """Without a translation the indices kept for the export input are a constant."""
    gen = torch.Generator().manual_seed(0)
    path = str(tmp_path / 'nms.onnx')
    n = 300
    example = (random_boxes(n, gen), torch.rand(n, generator=gen), torch.zeros(n).long())
    export(BatchedNMS(), example, path, ['boxes', 'scores', 'idxs'], ['boxes', 'scores',
                                                                      'idxs'])
    for n in (300, 1000, 2500):
        boxes, idxs = random_boxes(n, gen), torch.randint(0, 5, (n,), generator=gen)
        scores = torch.randperm(n, generator=gen).float() / n  # distinct: a defined order
        dets, keep = BatchedNMS()(boxes, scores, idxs)
        assert len(keep) < n  # boxes were suppressed
        got_dets, got_keep = run_onnx(path, boxes, scores, idxs)
        assert torch.equal(got_keep, keep)
        assert torch.equal(got_dets, dets)


def test_aligned_roi_align_exports_at_opset_17_with_the_kernels_numbers(tmp_path):
    """mmcv's own translation fails at opset 13+ and at opset 11 widens thin boxes."""
    torch.manual_seed(0)
    layer = ops.RoIAlign(7, 0.25, sampling_ratio=0, aligned=True)
    feats = torch.randn(2, 8, 24, 32)
    rois = torch.tensor([[0, 10.0, 10.0, 50.0, 40.0], [1, 3.3, 7.1, 3.9, 30.0],
                         [0, 100.0, 2.0, 127.0, 2.5], [1, -4.0, -3.0, 20.0, 90.0]])
    path = str(tmp_path / 'roi_align.onnx')
    export(layer, (feats, rois[:1]), path, ['feats', 'rois'], ['rois'])
    got = run_onnx(path, feats, rois)[0]
    assert (got - layer(feats, rois)).abs().max() <= 1e-6


def test_every_roi_level_is_in_the_graph(tmp_path):
    """Exported with RoIs of one level only, the graph still pools the others."""
    from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
    torch.manual_seed(0)
    extractor = SingleRoIExtractor(dict(type='RoIAlign', output_size=7, sampling_ratio=0),
                                   out_channels=8, featmap_strides=[4, 8, 16, 32]).eval()

    class Extract(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.extractor = extractor

        def forward(self, f0, f1, f2, f3, rois):
            return self.extractor((f0, f1, f2, f3), rois)

    feats = [torch.randn(1, 8, 64 // s, 96 // s) for s in (1, 2, 4, 8)]
    small = torch.tensor([[0, 5.0, 5.0, 30.0, 30.0], [0, 40.0, 20.0, 60.0, 50.0]])
    path = str(tmp_path / 'extractor.onnx')
    export(Extract(), (*feats, small), path, ['f0', 'f1', 'f2', 'f3', 'rois'], ['rois'])
    spread = torch.tensor([[0, 5.0, 5.0, 30.0, 30.0], [0, 0.0, 0.0, 150.0, 150.0],
                           [0, 10.0, 0.0, 310.0, 300.0], [0, 0.0, 0.0, 500.0, 480.0],
                           [0, 40.0, 20.0, 60.0, 50.0]])
    assert len(set(extractor.map_roi_levels(spread, 4).tolist())) == 4
    got = run_onnx(path, *feats, spread)[0]
    assert (got - extractor(feats, spread)).abs().max() <= 1e-6


class Sigmoid(torch.nn.Module):
    def forward(self, x):
        return x.sigmoid()


def test_sigmoid_keeps_its_relative_precision_in_onnxruntime(tmp_path):
    """onnxruntime's own Sigmoid returns 0 below -18: the RPN's low scores all tie."""
    x = torch.cat([torch.linspace(-80, 20, 10001), torch.tensor([-30.0, -20.0, -18.0])])
    path = str(tmp_path / 'sigmoid.onnx')
    export(Sigmoid(), (x,), path, ['x'], ['x'])
    got, want = run_onnx(path, x)[0], x.sigmoid()
    assert ((got - want).abs() / want).max() <= 1e-6
