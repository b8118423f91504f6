"""Inference from Python with mmdet's and mmseg's own APIs on the quickstart configs.

The checkpoints are those of a few training iterations on the tiny generated data
(``trained_run``, shared with the tool tests). Each API predicts on an image file and on
the same image as an array (BGR, as mmdet and mmseg read files); the predictions must be
well-formed and identical across input kinds and APIs.
"""
import os.path as osp
import subprocess
import sys

import mmcv
import numpy as np
import pytest
import torch
from mmengine.config import Config
from test_tools.tool_helpers import REPO, trained_run

CONFIGS = {
    'retinanet': 'configs/quickstart/retinanet_poolformer_s12_shapes.py',
    'mask_rcnn': 'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py',
    'semantic_fpn': 'configs/quickstart/semantic_fpn_poolformer_s12_shapes.py',
}
DET_CLASSES = ('circle', 'square', 'triangle')
SEG_CLASSES = ('background', 'circle', 'square', 'triangle')
# After a few iterations no box passes mmdet's 0.05 score threshold: keep the 10 best, so
# that there are boxes to compare.
MAX_BOXES = 10
DET_OPTIONS = {
    'retinanet': {'model.test_cfg.score_thr': 0.0, 'model.test_cfg.max_per_img': MAX_BOXES},
    'mask_rcnn': {'model.test_cfg.rcnn.score_thr': 0.0,
                  'model.test_cfg.rcnn.max_per_img': MAX_BOXES},
}
SIZE = 64


@pytest.fixture(scope='session')
def shapes(tmp_path_factory):
    from mmpoolformer.datasets import generate
    root = tmp_path_factory.mktemp('shapes_inference')
    generate(str(root), num_train=8, num_val=4, seed=0, size=SIZE, progress=False)
    return root


@pytest.fixture(scope='module')
def checkpoint(shapes, tmp_path_factory):
    return lambda case: str(trained_run(case, shapes, tmp_path_factory)['checkpoint'])


def val_image(shapes, case):
    """A validation image: its path and the array mmdet and mmseg read from it (BGR)."""
    folder = ('ade/ADEChallengeData2016/images/validation' if case == 'semantic_fpn' else
              'coco/val2017')
    path = str(shapes / folder / '000001.jpg')
    return path, mmcv.imread(path)


def det_config(case):
    cfg = Config.fromfile(osp.join(REPO, CONFIGS[case]))
    cfg.merge_from_dict(DET_OPTIONS[case])
    return cfg


def check_detections(sample, with_masks):
    assert tuple(sample.ori_shape) == (SIZE, SIZE)
    pred = sample.pred_instances
    n = len(pred)
    assert 0 < n <= MAX_BOXES
    assert pred.bboxes.shape == (n, 4) and pred.scores.shape == (n, )
    assert pred.labels.shape == (n, ) and pred.labels.dtype == torch.int64
    assert set(pred.labels.tolist()) <= set(range(len(DET_CLASSES)))
    assert ((pred.scores >= 0) & (pred.scores <= 1)).all()
    boxes = pred.bboxes
    assert (boxes >= -1e-3).all() and (boxes <= SIZE + 1e-3).all()  # inside the image
    assert (boxes[:, 2:] >= boxes[:, :2]).all()
    if with_masks:
        assert pred.masks.shape == (n, SIZE, SIZE) and pred.masks.dtype == torch.bool
    else:
        assert 'masks' not in pred


def assert_same_detections(a, b):
    a, b = a.pred_instances, b.pred_instances
    assert sorted(a.keys()) == sorted(b.keys())
    for key in a.keys():
        assert torch.equal(a[key], b[key]), key


def check_segmentation(sample):
    assert tuple(sample.ori_shape) == (SIZE, SIZE)
    logits, seg = sample.seg_logits.data, sample.pred_sem_seg.data
    assert logits.shape == (len(SEG_CLASSES), SIZE, SIZE)
    assert seg.shape == (1, SIZE, SIZE)  # the image's size, whatever the test scale
    assert torch.equal(seg[0], logits.argmax(0))


def assert_same_segmentation(a, b):
    assert torch.equal(a.seg_logits.data, b.seg_logits.data)
    assert torch.equal(a.pred_sem_seg.data, b.pred_sem_seg.data)


@pytest.mark.slow
@pytest.mark.parametrize('case', ['retinanet', 'mask_rcnn'])
def test_det_inferencer_and_inference_detector_agree(case, checkpoint, shapes):
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    path, array = val_image(shapes, case)
    masks = case == 'mask_rcnn'
    inferencer = DetInferencer(model=det_config(case), weights=checkpoint(case),
                               device='cpu')
    assert inferencer.model.dataset_meta['classes'] == DET_CLASSES
    from_file = inferencer(path, return_datasamples=True)['predictions'][0]
    check_detections(from_file, masks)
    assert_same_detections(inferencer(array, return_datasamples=True)['predictions'][0],
                           from_file)
    # What the user gets by default: plain lists (masks as RLE), one dict per image.
    plain = inferencer(path)['predictions'][0]
    assert plain['labels'] == from_file.pred_instances.labels.tolist()
    assert np.allclose(plain['bboxes'], from_file.pred_instances.bboxes.numpy())
    assert np.allclose(plain['scores'], from_file.pred_instances.scores.numpy())
    assert ('masks' in plain) == masks

    model = init_detector(det_config(case), checkpoint(case), device='cpu')
    assert model.dataset_meta['classes'] == DET_CLASSES
    # A file first: after an array, mmdet's inference_detector keeps reading arrays.
    assert_same_detections(inference_detector(model, path), from_file)
    assert_same_detections(inference_detector(model, array), from_file)


@pytest.mark.slow
def test_mmseg_inferencer_and_inference_model_agree(checkpoint, shapes):
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    config = osp.join(REPO, CONFIGS['semantic_fpn'])
    weights = checkpoint('semantic_fpn')
    path, array = val_image(shapes, 'semantic_fpn')
    inferencer = MMSegInferencer(model=config, weights=weights, device='cpu')
    assert inferencer.model.dataset_meta['classes'] == SEG_CLASSES
    from_file = inferencer(path, return_datasamples=True)
    check_segmentation(from_file)
    assert_same_segmentation(inferencer(array, return_datasamples=True), from_file)
    # What the user gets by default: the class map as an (H, W) array.
    plain = inferencer(path)['predictions']
    assert np.array_equal(plain, from_file.pred_sem_seg.data[0].numpy())

    model = init_model(config, weights, device='cpu')
    assert model.dataset_meta['classes'] == SEG_CLASSES
    # A file first: after an array, mmseg's inference_model keeps reading arrays.
    assert_same_segmentation(inference_model(model, path), from_file)
    assert_same_segmentation(inference_model(model, array), from_file)


@pytest.mark.slow
def test_detector_and_segmentor_in_one_process(checkpoint, shapes):
    """init_detector and init_model each set mmengine's global default scope, which
    inference_detector and inference_model build their pipelines in; the Inferencers
    build theirs when created."""
    from mmdet.apis import DetInferencer, inference_detector, init_detector
    from mmengine.registry import DefaultScope
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    det_path, _ = val_image(shapes, 'retinanet')
    seg_path, _ = val_image(shapes, 'semantic_fpn')
    seg_config = osp.join(REPO, CONFIGS['semantic_fpn'])
    detector = init_detector(det_config('retinanet'), checkpoint('retinanet'), device='cpu')
    expected = inference_detector(detector, det_path)
    segmentor = init_model(seg_config, checkpoint('semantic_fpn'), device='cpu')
    with pytest.raises(TypeError, match='with_bbox'):  # mmseg's LoadAnnotations now
        inference_detector(detector, det_path)
    with DefaultScope.overwrite_default_scope('mmdet'):
        assert_same_detections(inference_detector(detector, det_path), expected)
    check_segmentation(inference_model(segmentor, seg_path))

    inferencer = DetInferencer(model=det_config('retinanet'), weights=checkpoint('retinanet'),
                               device='cpu')
    MMSegInferencer(model=seg_config, weights=checkpoint('semantic_fpn'), device='cpu')
    assert_same_detections(inferencer(det_path, return_datasamples=True)['predictions'][0],
                           expected)


# Only mmdet's or mmseg's API is imported: the config's custom_imports must bring the
# backbone (and the weights_only allowlist the checkpoint needs).
FRESH_PROCESS = {
    'retinanet': '''
import sys
import numpy as np
from mmdet.apis import inference_detector, init_detector
config, weights, image, out, options = sys.argv[1:]
assert 'mmpoolformer' not in sys.modules
model = init_detector(config, weights, device='cpu', cfg_options=eval(options))
assert type(model.backbone).__module__.startswith('mmpoolformer.'), type(model.backbone)
pred = inference_detector(model, image).pred_instances
np.savez(out, **{k: pred[k].numpy() for k in ('bboxes', 'scores', 'labels')})
''',
    'semantic_fpn': '''
import sys
import numpy as np
from mmseg.apis import MMSegInferencer
config, weights, image, out, _ = sys.argv[1:]
assert 'mmpoolformer' not in sys.modules
inferencer = MMSegInferencer(model=config, weights=weights, device='cpu')
backbone = inferencer.model.backbone
assert type(backbone).__module__.startswith('mmpoolformer.'), type(backbone)
pred = inferencer(image, return_datasamples=True)
np.savez(out, logits=pred.seg_logits.data.numpy(), seg=pred.pred_sem_seg.data.numpy())
''',
}


@pytest.mark.slow
@pytest.mark.parametrize('case', list(FRESH_PROCESS))
def test_config_file_alone_brings_the_backbone(case, checkpoint, shapes, tmp_path):
    path, _ = val_image(shapes, case)
    config, weights = osp.join(REPO, CONFIGS[case]), checkpoint(case)
    out = tmp_path / 'pred.npz'
    proc = subprocess.run(
        [sys.executable, '-c', FRESH_PROCESS[case], config, weights, path, str(out),
         repr(DET_OPTIONS.get(case))], cwd=tmp_path, capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    got = np.load(out)
    # The same predictions as in this process, where mmpoolformer was imported first.
    if case == 'semantic_fpn':
        from mmseg.apis import inference_model, init_model
        pred = inference_model(init_model(config, weights, device='cpu'), path)
        assert np.array_equal(got['seg'], pred.pred_sem_seg.data.numpy())
        assert np.allclose(got['logits'], pred.seg_logits.data.numpy(), atol=1e-5)
    else:
        from mmdet.apis import inference_detector, init_detector
        pred = inference_detector(init_detector(det_config(case), weights, device='cpu'),
                                  path).pred_instances
        assert len(pred) > 0 and np.array_equal(got['labels'], pred.labels.numpy())
        assert np.allclose(got['bboxes'], pred.bboxes.numpy(), atol=1e-4)
        assert np.allclose(got['scores'], pred.scores.numpy(), atol=1e-5)
