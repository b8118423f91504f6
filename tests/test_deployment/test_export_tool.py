"""tools/deployment/export_onnx.py on the quickstart models after a short training run."""
import re

import pytest
from test_tools.tool_helpers import run, trained_run

pytest.importorskip('onnxruntime', reason='onnx and onnxruntime are in the test extras')


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    from mmpoolformer.datasets import generate
    root = tmp_path_factory.mktemp('shapes_export')
    generate(str(root), num_train=8, num_val=4, seed=0, size=64, progress=False)
    return root


def errors(log):
    return [float(e) for e in re.findall(r'max relative error ([0-9.e+-]+)', log)]


@pytest.mark.slow
@pytest.mark.parametrize('case,shape', [('retinanet', (192, 256)),
                                        ('semantic_fpn', (128, 160))])
def test_dynamic_export_matches_pytorch_at_two_sizes(case, shape, shapes, tmp_path,
                                                     tmp_path_factory):
    trained = trained_run(case, shapes, tmp_path_factory)
    out = tmp_path / 'model.onnx'
    rc, log = run('tools/deployment/export_onnx.py', trained['config'],
                  str(trained['checkpoint']), '--out', str(out), '--shape', *map(str, shape),
                  '--dynamic', '--benchmark', '--cfg-options', *trained['options'])
    assert rc == 0, log[-3000:]
    assert out.is_file()
    errs = errors(log)
    assert len(errs) == 2 and max(errs) < 1e-4, log[-2000:]
    assert re.search(r'onnxruntime [0-9.]+ ms, eager PyTorch [0-9.]+ ms', log)


@pytest.mark.slow
def test_mask_rcnn_export_matches_pytorch(shapes, tmp_path, tmp_path_factory):
    """mmdet's tensor mode of Mask R-CNN, the RPN's ranking and NMS in the graph, at the
    export input and another image of the same size."""
    trained = trained_run('mask_rcnn', shapes, tmp_path_factory)
    out = tmp_path / 'model.onnx'
    rc, log = run('tools/deployment/export_onnx.py', trained['config'],
                  str(trained['checkpoint']), '--out', str(out), '--shape', '192', '256',
                  '--benchmark', '--cfg-options', *trained['options'])
    assert rc == 0, log[-3000:]
    assert 'opset 17, fixed shape' in log
    errs = errors(log)
    assert len(errs) == 2 and max(errs) < 1e-4, log[-2000:]
    assert re.search(r'onnxruntime [0-9.]+ ms, eager PyTorch [0-9.]+ ms', log)


def test_a_two_stage_detector_is_refused_dynamic_shapes_with_a_reason(shapes, tmp_path):
    import torch
    path = tmp_path / 'random.pth'
    torch.save({'state_dict': {}}, path)
    rc, log = run('tools/deployment/export_onnx.py',
                  'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py', str(path), '--out',
                  str(tmp_path / 'm.onnx'), '--dynamic')
    assert rc != 0
    assert 'two-stage detector' in log and 'drop --dynamic' in log


def test_a_two_stage_detector_is_refused_opsets_without_aligned_roi_align(shapes, tmp_path):
    import torch
    path = tmp_path / 'random.pth'
    torch.save({'state_dict': {}}, path)
    rc, log = run('tools/deployment/export_onnx.py',
                  'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py', str(path), '--out',
                  str(tmp_path / 'm.onnx'), '--opset', '11')
    assert rc != 0
    assert 'RoIAlign' in log and 'opset 16' in log
