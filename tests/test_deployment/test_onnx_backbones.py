"""Every family exports to ONNX (both exporters, opset 17, dynamic batch, height and width)
and runs in onnxruntime with eager's numbers at sizes other than the export size."""
import pytest
import torch

from mmpoolformer import compat
from mmpoolformer.deployment import count_nodes, export_onnx, onnxruntime_outputs
from mmpoolformer.testing import FAMILIES, build_official, paired

pytest.importorskip('onnxruntime', reason='onnx and onnxruntime are in the test extras')

# (export size, two other sizes). RandFormer's resampled mixing matrix is traced for maps
# larger than its 14 x 14 / 7 x 7 grids (images of 224 px and more per side).
SIZES = {family: ((96, 128), [(2, 77, 101), (1, 130, 97)]) for family in FAMILIES}
SIZES['RandFormer'] = ((256, 320), [(2, 288, 352), (1, 320, 256)])


def max_rel_error(got, want):
    return max(((g - w).abs().max() / w.abs().max()).item() for g, w in zip(got, want))


@pytest.mark.parametrize('dynamo', [False, True], ids=['torchscript', 'dynamo'])
@pytest.mark.parametrize('family', FAMILIES)
def test_backbone_exports_and_matches_eager_at_other_sizes(family, dynamo, tmp_path):
    if dynamo and compat.dynamo_export_unsupported():
        pytest.skip(compat.dynamo_export_unsupported())
    model, _ = paired(family)
    model.eval()
    (h, w), others = SIZES[family]
    path = str(tmp_path / 'backbone.onnx')
    export_onnx(model, torch.randn(1, 3, h, w), path, dynamic=True, opset=17, dynamo=dynamo)
    for b, oh, ow in others:
        x = torch.randn(b, 3, oh, ow)
        with torch.no_grad():
            want = model(x)
        got = onnxruntime_outputs(path, x)
        assert [tuple(g.shape) for g in got] == [tuple(t.shape) for t in want]
        assert max_rel_error(got, want) < 1e-5


@pytest.mark.parametrize('family', FAMILIES)
def test_exported_graph_is_as_lean_as_the_official_definitions(family, tmp_path):
    """No more computing nodes than the official definition exported the same way.

    Layout and shape plumbing (Transpose, Reshape, Shape, ...: ``PLUMBING_OPS``) is not
    counted: our stages keep (B, H, W, C) features, so NCHW kernels sit between
    transposes, which runtimes fold; the official code has Identity nodes instead.
    """
    model, _ = paired(family)
    official = build_official(family)
    # The official RandFormer only runs at 224 x 224 (its fixed mixing matrices).
    h, w = (224, 224) if family == 'RandFormer' else SIZES[family][0]
    dynamic = family != 'RandFormer'
    x = torch.randn(1, 3, h, w)
    ours_path, ref_path = str(tmp_path / 'ours.onnx'), str(tmp_path / 'official.onnx')
    export_onnx(model.eval(), x, ours_path, dynamic=dynamic)
    export_onnx(official.eval(), x, ref_path, dynamic=dynamic)
    ours, ref = count_nodes(ours_path), count_nodes(ref_path)
    assert ours <= ref, f'{family}: {ours} computing nodes against the official {ref}'


def test_bias_free_layer_norms_export_with_a_bias_input(tmp_path):
    """onnxruntime crashes (segmentation fault) on a LayerNormalization node without its
    optional bias, which torch 2.1's exporter writes for a bias-free LayerNorm: every
    LayerNormalization of the export gets all three inputs, and runs in onnxruntime."""
    import onnx

    from mmpoolformer.models.layers import build_norm
    norm = build_norm(dict(type='LN', bias=False, eps=1e-6), 8).eval()
    torch.nn.init.normal_(norm.weight)
    path = str(tmp_path / 'norm.onnx')
    export_onnx(norm, torch.randn(1, 3, 5, 8), path, dynamic=True, opset=17)
    nodes = [n for n in onnx.load(path).graph.node if n.op_type == 'LayerNormalization']
    assert nodes and all(len(n.input) == 3 and all(n.input) for n in nodes)
    x = torch.randn(2, 3, 7, 8)  # (B, H, W, C): batch and W are the dynamic axes
    with torch.no_grad():
        want = norm(x)
    assert max_rel_error(onnxruntime_outputs(path, x), [want]) < 1e-5
