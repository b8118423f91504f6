"""mmcv's CPU NMS and RoIAlign on bf16/fp16 tensors (what CPU autocast gives them): the
float32 result, and RoIAlign's gradient; without mmpoolformer.engine.mmcv_compat the kernels
refuse these tensors."""
import glob
import os.path as osp
import types

import pytest
import torch
from mmcv.ops import RoIAlign, batched_nms, nms
from mmcv.ops.nms import NMSop
from mmcv.ops.roi_align import RoIAlignFunction

import mmpoolformer  # noqa: F401  (installs the fix)
from mmpoolformer.engine import install_mmcv_compat, mmcv_compat

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LOW = pytest.mark.parametrize('low', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])


def random_boxes(n, size=60.0):
    xy = torch.rand(n, 2) * size
    return torch.cat([xy, xy + 4 + torch.rand(n, 2) * size / 2], dim=1)


@LOW
def test_nms_of_low_precision_cpu_tensors_is_the_fp32_nms(low):
    boxes, scores = random_boxes(200).to(low), torch.rand(200).to(low)
    want_dets, want_inds = nms(boxes.float(), scores.float(), 0.5, score_threshold=0.1,
                               max_num=50)
    dets, inds = nms(boxes, scores, 0.5, score_threshold=0.1, max_num=50)
    assert 10 < len(inds) <= 50  # something was suppressed, something kept
    assert torch.equal(inds, want_inds)
    assert dets.dtype == low and torch.equal(dets, want_dets.to(low))


@LOW
def test_batched_nms_of_low_precision_cpu_tensors_is_the_fp32_one(low):
    """mmdet's path (RPN levels, RoI-head classes). Integer corners below 64 and 3 groups:
    the per-group offsets that batched_nms adds are exact in bf16 too, so the fp32 run on
    the same values must keep the same boxes."""
    boxes = random_boxes(300, size=40.0).floor().to(low)
    scores, groups = torch.rand(300).to(low), torch.randint(0, 3, (300,))
    want_dets, want_keep = batched_nms(boxes.float(), scores.float(), groups,
                                       dict(type='nms', iou_threshold=0.6))
    dets, keep = batched_nms(boxes, scores, groups, dict(type='nms', iou_threshold=0.6))
    assert len(keep) < 300 and torch.equal(keep, want_keep)
    assert dets.dtype == low and torch.equal(dets, want_dets.to(low))


def roi_align_run(x, rois, pool_mode, grad):
    x = x.detach().requires_grad_()
    out = RoIAlign((3, 3), spatial_scale=0.5, sampling_ratio=2, pool_mode=pool_mode,
                   aligned=True)(x, rois)
    out.backward(grad)
    return out, x.grad


@LOW
@pytest.mark.parametrize('pool_mode', ['avg', 'max'])
def test_roi_align_of_low_precision_cpu_tensors_is_the_fp32_one_with_its_gradient(
        low, pool_mode):
    x = torch.randn(2, 4, 16, 16).to(low)
    rois = torch.cat([torch.tensor([[0.0], [1.0], [1.0]]), random_boxes(3, 24.0)], 1).to(low)
    grad = torch.randn(3, 4, 3, 3).to(low)
    want, want_grad = roi_align_run(x.float(), rois.float(), pool_mode, grad.float())
    out, x_grad = roi_align_run(x, rois, pool_mode, grad)
    # Features and the input's gradient in the input's dtype, as with fp16 on CUDA.
    assert out.dtype == low and torch.equal(out, want.to(low))
    assert x_grad.dtype == low and torch.equal(x_grad, want_grad.to(low))
    assert want_grad.abs().sum() > 0


def test_roi_align_under_cpu_autocast_trains_the_layers_before_it():
    """The training case: a conv under bf16 autocast feeds RoIAlign; its gradient reaches
    the conv's fp32 weight, as in fp32 within bf16's precision."""
    conv = torch.nn.Conv2d(3, 4, 3, padding=1)
    x = torch.randn(1, 3, 16, 16)
    rois = torch.tensor([[0.0, 2.0, 3.0, 20.0, 25.0]])
    grads = []
    for enabled in (False, True):
        conv.zero_grad()
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=enabled):
            out = RoIAlign((2, 2), 0.5, 2)(conv(x), rois)
        assert out.dtype == (torch.bfloat16 if enabled else torch.float32)
        out.float().square().sum().backward()
        grads.append(conv.weight.grad.clone())
    fp32, bf16 = grads
    assert torch.nn.functional.cosine_similarity(fp32.flatten(), bf16.flatten(), 0) > 0.99


@pytest.mark.parametrize('cls,method', [(NMSop, 'forward'), (RoIAlignFunction, 'forward'),
                                        (RoIAlignFunction, 'backward')])
def test_without_the_fix_mmcv_refuses_these_tensors(monkeypatch, cls, method):
    """What the tests above would meet without the fix: each wrapped method is needed."""
    monkeypatch.setattr(cls, method, staticmethod(getattr(cls, method).__wrapped__))
    with pytest.raises((RuntimeError, NotImplementedError), match='BFloat16'):
        if cls is NMSop:
            nms(random_boxes(20).bfloat16(), torch.rand(20).bfloat16(), 0.5)
        else:
            roi_align_run(torch.randn(1, 2, 8, 8).bfloat16(),
                          torch.tensor([[0.0, 1.0, 1.0, 9.0, 9.0]]).bfloat16(), 'avg',
                          torch.ones(1, 2, 3, 3).bfloat16())


@pytest.mark.parametrize('tensor', [
    torch.zeros(2, 4), torch.zeros(2, 4, dtype=torch.float64),
    torch.zeros(2, 4, dtype=torch.bfloat16, device='meta')],  # stands for CUDA: not the CPU
    ids=['fp32', 'fp64', 'bf16-not-cpu'])
def test_inputs_the_kernels_take_pass_through_untouched(tensor):
    seen = []

    def kernel(ctx, *tensors):
        seen.extend(tensors)
        return 'result'

    ctx, scores = types.SimpleNamespace(), tensor[:, 0]
    assert mmcv_compat.fp32_nms_forward(kernel)(ctx, tensor, scores, 0.5) == 'result'
    assert mmcv_compat.fp32_roi_align_forward(kernel)(ctx, tensor, tensor) == 'result'
    assert mmcv_compat.fp32_roi_align_backward(kernel)(ctx, tensor) == 'result'
    assert len(seen) == 6 and all(a is b for a, b in zip(seen, [tensor, scores, 0.5] +
                                                         [tensor] * 3))


def test_importing_mmpoolformer_installs_it_once():
    assert NMSop.forward.mmcv_compat  # by the import above
    install_mmcv_compat()  # again
    for cls, method in [(NMSop, 'forward'), (RoIAlignFunction, 'forward'),
                        (RoIAlignFunction, 'backward')]:
        installed = getattr(cls, method)
        assert installed.mmcv_compat
        # One wrapper around mmcv's own method, not two.
        assert not getattr(installed.__wrapped__, 'mmcv_compat', False)
        assert installed.__wrapped__.__module__ == f'mmcv.ops.{cls.__module__.split(".")[-1]}'


def test_mask_rcnn_predicts_under_cpu_autocast_as_in_fp32():
    """Inference under bf16 autocast: the RPN's NMS, RoIAlign for boxes and masks, the RoI
    head's NMS, mask pasting."""
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import bbox_overlaps
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(osp.join(REPO, 'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py'))
    cfg.merge_from_dict({
        'model.test_cfg.rpn.nms_pre': 200, 'model.test_cfg.rpn.max_per_img': 50,
        'model.test_cfg.rcnn.score_thr': 0.0, 'model.test_cfg.rcnn.max_per_img': 10})
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model).eval()
    meta = dict(img_shape=(64, 64), ori_shape=(64, 64), scale_factor=(1.0, 1.0))
    data = dict(inputs=[torch.randint(0, 256, (3, 64, 64), dtype=torch.uint8)],
                data_samples=[DetDataSample(metainfo=meta)])
    with torch.no_grad():
        want = model.test_step(data)[0].pred_instances
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got = model.test_step(data)[0].pred_instances
    assert got.bboxes.dtype == torch.bfloat16 and got.masks.shape == (10, 64, 64)
    # The same detections within bf16's precision: the 10 best scores (sorted), and most
    # boxes found again with their class (near-equal scores may trade places at the end).
    assert (want.scores - got.scores.float()).abs().max() < 0.02
    found = (bbox_overlaps(want.bboxes, got.bboxes.float()) > 0.8) & \
        (want.labels[:, None] == got.labels[None])
    assert found.any(1).sum() >= 7


@pytest.fixture(scope='module')
def shapes(tmp_path_factory):
    from mmpoolformer.datasets import generate
    root = tmp_path_factory.mktemp('shapes_amp')
    generate(str(root), num_train=8, num_val=4, seed=0, size=64, progress=False)
    return root


@pytest.mark.slow
def test_mask_rcnn_trains_with_amp_on_the_cpu_and_its_checkpoint_tests(shapes, tmp_path):
    """tools/train.py --amp (bf16 autocast: the RPN's NMS, RoIAlign forward and backward),
    2 iterations, then tools/test.py on its checkpoint, in one child process."""
    from test_reliability.cli import config, run_batch, tiny_options
    from test_tools.test_train_test import metrics
    # Fewer RoIs than the configs' (the mask head's convs dominate the time); no
    # validation in training: tools/test.py evaluates.
    opts = tiny_options('mask_rcnn', shapes, 2)
    train_opts = opts + ['val_cfg=None', 'val_dataloader=None', 'val_evaluator=None',
                         'model.train_cfg.rpn_proposal.max_per_img=200',
                         'model.train_cfg.rcnn.sampler.num=64']
    test_opts = opts + ['model.test_cfg.rpn.max_per_img=200',
                        'model.test_cfg.rcnn.max_per_img=10']
    work = tmp_path / 'work'
    results = run_batch([
        ('train', [config('mask_rcnn'), '--amp', '--work-dir', work,
                   '--cfg-options', *train_opts]),
        ('test', [config('mask_rcnn'), work / 'iter_2.pth', '--work-dir', tmp_path / 'test',
                  '--cfg-options', *test_opts]),
    ], tmp_path)
    assert results[0] == (0, ''), results[0][1][-3000:]
    assert results[1] == (0, ''), results[1][1][-3000:]
    train_log, = glob.glob(str(work / '*' / '*.log'))
    train_log = open(train_log).read()
    assert "type='mmpoolformer.AmpCPUOptimWrapper'" in train_log
    assert train_log.count('Iter(train)') == 2
    from mmpoolformer.checkpoint import load_checkpoint_file
    state = load_checkpoint_file(str(work / 'iter_2.pth'))
    assert all(v.dtype == torch.float32 for v in state['state_dict'].values()
               if v.is_floating_point())  # autocast: the weights stay fp32
    test_log, = glob.glob(str(tmp_path / 'test' / '*' / '*.log'))
    found = metrics(open(test_log).read())
    for key in ('coco/bbox_mAP', 'coco/segm_mAP'):
        assert 0.0 <= found[key] <= 1.0, found


def test_roi_align_reads_channels_last_features_correctly():
    """mmcv's kernel reads data_ptr() as NCHW: a channels-last view gets a contiguous copy,
    so it pools what the contiguous tensor pools (forward and input gradient)."""
    from mmcv.ops import roi_align
    torch.manual_seed(0)
    feats = torch.randn(2, 8, 12, 10)
    rois = torch.tensor([[0, 1., 1., 7., 9.], [1, 0., 2., 9., 6.]])
    grads = []
    for x in (feats.clone(), feats.clone().contiguous(memory_format=torch.channels_last)):
        x.requires_grad_()
        out = roi_align(x, rois, (3, 3), 1.0, 2, 'avg', True)
        out.backward(torch.arange(out.numel(), dtype=out.dtype).view(out.shape))
        grads.append((out.detach(), x.grad))
    torch.testing.assert_close(grads[1][0], grads[0][0])
    torch.testing.assert_close(grads[1][1], grads[0][1])
