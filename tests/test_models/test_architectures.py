"""PoolFormer-S12 in mmdet's and mmseg's own configs of the main architectures.

Each case loads an installed upstream config, builds it once as it is (its own backbone)
and once with ``PoolFormer`` s12 swapped in, both from scratch and from the same seed,
and runs a small synthetic batch through the model's data_preprocessor in ``loss`` mode,
backward, and ``predict`` mode. docs/architectures.md documents the same swaps.
"""
import importlib
import os.path as osp
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Dict, Optional, Sequence

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmpoolformer  # noqa: F401  (registers the backbones)

pytestmark = pytest.mark.slow

S12_DIMS = [64, 128, 320, 512]
# Two images: of different sizes for the detectors, so that padding and per-image shapes
# are exercised; mmseg's test mode takes one size per batch (not a multiple of 32, so
# that Mask2Former's padding is undone in predict).
IMAGE_SHAPES = {'mmdet': [(160, 192), (128, 160)], 'mmseg': [(144, 176), (144, 176)]}
# The bound on the ratio of the total losses at initialisation, ours to the upstream
# backbone's. Those losses are set by the heads (prior-probability biases, matching,
# random queries) and the targets, hardly by the features, which every neck and head here
# normalises: PoolFormer-S12's outputs times 100, zeros or noise move them by less than
# 25%. So this compares the wiring around the backbone (the same losses over the same
# targets, none lost or blown up), not the backbone itself; that the backbone takes part
# is what the gradient checks show. Measured ratios: 0.91 (ATSS) to 1.27 (RTMDet-tiny,
# whose loss is a few positives' worth); a factor of 2 leaves room for other seeds and
# versions of torch and mmdet.
LOSS_RATIO_BOUND = 2.0


@dataclass
class Arch:
    """One upstream architecture and what the swap must change in its config."""
    scope: str  # 'mmdet' or 'mmseg'
    config: str  # under the package's .mim/configs
    out_indices: Sequence[int]
    # Config keys (dotted, under model) whose in_channels follow the backbone: a list of
    # stages gives a list of channels, one stage a single int.
    channels: Dict[str, object]
    # Further changes for ours only (dotted keys under model).
    ours: Dict[str, object] = field(default_factory=dict)
    # Changes for both models: sizes that keep the test small, nothing about the backbone.
    both: Dict[str, object] = field(default_factory=dict)
    # What the predictions must hold: 'boxes', 'masks' (instance masks), 'sem_seg'.
    predicts: Sequence[str] = ('boxes',)
    # For query-based detectors: how many instances predict returns per image.
    num_predictions: Optional[int] = None


# ImageNet statistics, RGB: what the backbones' checkpoints were trained with. RTMDet's
# configs normalise BGR (the same numbers reversed), caffe-style ResNets' BGR with std 1.
IMAGENET_PREPROCESSOR = {
    'data_preprocessor.mean': [123.675, 116.28, 103.53],
    'data_preprocessor.std': [58.395, 57.12, 57.375],
    'data_preprocessor.bgr_to_rgb': True,
}

ARCHS = {
    'cascade_mask_rcnn': Arch(
        'mmdet', 'cascade_rcnn/cascade-mask-rcnn_r50_fpn_1x_coco.py', (0, 1, 2, 3),
        {'neck.in_channels': [0, 1, 2, 3]},
        # 2000 proposals per image are for 1333x800 inputs; 256 do here.
        both={'train_cfg.rpn_proposal.max_per_img': 256,
              'test_cfg.rpn.max_per_img': 256},
        predicts=('boxes', 'masks')),
    'dino': Arch(
        'mmdet', 'dino/dino-4scale_r50_8xb2-12e_coco.py', (1, 2, 3),
        {'neck.in_channels': [1, 2, 3]},
        # DINO's queries are the top-k of the encoder's tokens: 900 need larger images
        # than these (639 tokens at 160x192), whatever the backbone.
        both={'num_queries': 300}, num_predictions=300),
    'deformable_detr': Arch(
        'mmdet', 'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py', (1, 2, 3),
        {'neck.in_channels': [1, 2, 3]}, num_predictions=100),
    'mask2former_coco': Arch(
        'mmdet', 'mask2former/mask2former_r50_8xb2-lsj-50e_coco.py', (0, 1, 2, 3),
        {'panoptic_head.in_channels': [0, 1, 2, 3]},
        # Its large-scale-jitter pad to 1024x1024 belongs to the COCO recipe; 12544
        # points per mask suit the 256x256 mask logits of that size, these have 40x48.
        both={'data_preprocessor.batch_augments': None, 'train_cfg.num_points': 1536},
        predicts=('boxes', 'masks'), num_predictions=100),
    'rtmdet_tiny': Arch(
        'mmdet', 'rtmdet/rtmdet_tiny_8xb32-300e_coco.py', (1, 2, 3),
        {'neck.in_channels': [1, 2, 3]},
        ours=IMAGENET_PREPROCESSOR),
    'fcos': Arch(
        'mmdet', 'fcos/fcos_r50-caffe_fpn_gn-head_1x_coco.py', (1, 2, 3),
        # FCOS reads strides 8-32 (start_level=1 of four inputs): give it only those.
        {'neck.in_channels': [1, 2, 3]},
        ours={'neck.start_level': 0, **IMAGENET_PREPROCESSOR}),
    'atss': Arch(
        'mmdet', 'atss/atss_r50_fpn_1x_coco.py', (1, 2, 3),
        {'neck.in_channels': [1, 2, 3]}, ours={'neck.start_level': 0}),
    'upernet': Arch(
        'mmseg', 'upernet/upernet_r50_4xb4-80k_ade20k-512x512.py', (0, 1, 2, 3),
        {'decode_head.in_channels': [0, 1, 2, 3], 'auxiliary_head.in_channels': 2},
        ours={'pretrained': None}, predicts=('sem_seg',)),
    'mask2former_ade20k': Arch(
        'mmseg', 'mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py', (0, 1, 2, 3),
        {'decode_head.in_channels': [0, 1, 2, 3]},
        # 12544 points per mask suit the 128x128 mask logits of 512x512 crops.
        both={'decode_head.train_cfg.num_points': 1536},
        predicts=('sem_seg',)),
    'segformer_head': Arch(
        'mmseg', 'segformer/segformer_mit-b0_8xb2-160k_ade20k-512x512.py', (0, 1, 2, 3),
        {'decode_head.in_channels': [0, 1, 2, 3]}, predicts=('sem_seg',)),
}


def upstream_config(scope: str, path: str) -> Config:
    package = importlib.import_module(scope)
    return Config.fromfile(osp.join(osp.dirname(package.__file__), '.mim', 'configs', path))


def set_key(cfg: Config, dotted: str, value) -> None:
    *parents, last = dotted.split('.')
    node = cfg.model
    for key in parents:
        node = node[key]
    node[last] = value


def swap_in_poolformer(cfg: Config, arch: Arch) -> None:
    cfg.model.backbone = dict(type='PoolFormer', arch='s12', out_indices=arch.out_indices,
                              init_cfg=None)
    for key, stages in arch.channels.items():
        value = S12_DIMS[stages] if isinstance(stages, int) else [S12_DIMS[s] for s in stages]
        set_key(cfg, key, value)
    for key, value in arch.ours.items():
        set_key(cfg, key, value)


def build(cfg: Config):
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = registry.build(cfg.model)
    model.init_weights()
    return model


def make_model(name: str, ours: bool):
    arch = ARCHS[name]
    cfg = upstream_config(arch.scope, arch.config)
    if ours:
        swap_in_poolformer(cfg, arch)
    else:
        # From scratch too: the same footing as ours, and no download.
        cfg.model.backbone.init_cfg = None
        if 'pretrained' in cfg.model:
            cfg.model.pretrained = None
    for key, value in arch.both.items():
        set_key(cfg, key, value)
    torch.manual_seed(0)
    return build(cfg)


def det_batch(with_masks: bool, num_classes: int = 80):
    from mmdet.structures import DetDataSample
    from mmdet.structures.bbox import HorizontalBoxes
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for h, w in IMAGE_SHAPES['mmdet']:
        image = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        boxes = np.array([[8, 10, 0.6 * w, 0.5 * h], [0.3 * w, 0.4 * h, w - 6, h - 4],
                          [0.5 * w, 6, 0.8 * w, 0.35 * h]], dtype=np.float32)
        masks = np.zeros((len(boxes), h, w), dtype=np.uint8)
        for mask, (x1, y1, x2, y2) in zip(masks, boxes.astype(int)):
            mask[y1:y2, x1:x2] = 1
            image[:, y1:y2, x1:x2] //= 2  # something for the features to find
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w),
                                             scale_factor=(1.0, 1.0)))
        sample.gt_instances = InstanceData(
            bboxes=HorizontalBoxes(torch.from_numpy(boxes)),
            labels=torch.from_numpy(rng.integers(0, num_classes, len(boxes))))
        if with_masks:  # as LoadAnnotations(with_mask=True) gives them
            sample.gt_instances.masks = BitmapMasks(masks, h, w)
        inputs.append(torch.from_numpy(image))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def seg_batch(num_classes: int = 150):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for h, w in IMAGE_SHAPES['mmseg']:
        image = rng.integers(0, 256, (3, h, w), dtype=np.uint8)
        labels = np.full((1, h, w), 255, dtype=np.int64)  # 255: ignored
        for index, label in enumerate(rng.choice(num_classes, 4, replace=False)):
            labels[:, index * h // 4:(index + 1) * h // 4, : w - 8] = label
            image[:, index * h // 4:(index + 1) * h // 4] //= index + 1
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(labels))
        inputs.append(torch.from_numpy(image))
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def small_seg_preprocessor(model):
    # mmseg's ADE20K configs pad every training batch to their 512x512 crop.
    model.data_preprocessor.size = IMAGE_SHAPES['mmseg'][0]


def train_step(model, batch):
    """Total loss (as mmengine sums it), the loss entries, after one backward."""
    model.train()
    data = model.data_preprocessor(batch, True)
    losses = model(**data, mode='loss')
    total, log_vars = model.parse_losses(losses)
    total.backward()
    return total.item(), {key: value.item() for key, value in log_vars.items()}


def check_predictions(arch: Arch, results) -> None:
    shapes = IMAGE_SHAPES[arch.scope]
    assert len(results) == len(shapes)
    for result, (h, w) in zip(results, shapes):
        if 'sem_seg' in arch.predicts:
            seg = result.pred_sem_seg.data
            assert seg.shape == (1, h, w)
            assert int(seg.min()) >= 0 and int(seg.max()) < 150
            assert result.seg_logits.data.shape == (150, h, w)
            continue
        pred = result.pred_instances
        n = len(pred)
        if arch.num_predictions is not None:
            assert n == arch.num_predictions
        assert pred.scores.shape == (n,) and pred.labels.shape == (n,)
        assert bool(((pred.scores >= 0) & (pred.scores <= 1)).all())
        assert bool(((pred.labels >= 0) & (pred.labels < 80)).all())
        boxes = pred.bboxes
        assert boxes.shape == (n, 4)
        # Boxes in the original image's pixels, clipped to it.
        assert bool((boxes[:, 0::2] >= 0).all() and (boxes[:, 0::2] <= w).all())
        assert bool((boxes[:, 1::2] >= 0).all() and (boxes[:, 1::2] <= h).all())
        if 'masks' in arch.predicts:
            assert tuple(pred.masks.shape) == (n, h, w)
            assert pred.masks.dtype == torch.bool


def run(name: str, ours: bool):
    arch = ARCHS[name]
    model = make_model(name, ours)
    if arch.scope == 'mmseg':
        make_batch = seg_batch
        small_seg_preprocessor(model)
    else:
        make_batch = partial(det_batch, 'masks' in arch.predicts)
    torch.manual_seed(1)
    total, log_vars = train_step(model, make_batch())
    model.eval()
    with torch.no_grad():
        results = model.test_step(make_batch())
    return model, total, log_vars, results


@pytest.mark.parametrize('name', sorted(ARCHS))
def test_poolformer_in_upstream_architecture(name):
    arch = ARCHS[name]
    _, reference, reference_vars, _ = run(name, ours=False)
    model, total, log_vars, results = run(name, ours=True)

    assert type(model.backbone).__name__ == 'PoolFormer'
    assert model.backbone.out_channels == [S12_DIMS[s] for s in arch.out_indices]
    # Every loss entry finite, and the same entries as with the upstream backbone.
    assert sorted(log_vars) == sorted(reference_vars)
    bad = {k: v for k, v in log_vars.items() if not np.isfinite(v)}
    assert not bad, f'non-finite losses: {bad}'
    assert np.isfinite(reference)
    ratio = total / reference
    assert 1 / LOSS_RATIO_BOUND < ratio < LOSS_RATIO_BOUND, (
        f'total loss {total:.4f} with PoolFormer-S12, {reference:.4f} with the upstream '
        f'backbone (ratio {ratio:.2f})')
    # Every backbone parameter (stem, blocks, downsamplings, the output norms of the
    # requested stages) gets a gradient that exists and is finite everywhere. Each is
    # nonzero somewhere, except the biases of the norms in front of the pooling mixers:
    # for a per-channel constant b, pool(x + b) - (x + b) = pool(x) - x (the average of a
    # constant is that constant), so their gradient is zero by construction.
    params = dict(model.backbone.named_parameters())
    assert len(params) > 100 and all(p.requires_grad for p in params.values())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing, f'no gradient: {missing}'
    not_finite = [n for n, p in params.items() if not torch.isfinite(p.grad).all()]
    assert not not_finite, f'non-finite gradient: {not_finite}'
    before_pooling = {n for n in params if n.endswith('norm1.bias')}
    assert len(before_pooling) == sum(model.backbone.arch['layers'])
    zero = [n for n, p in params.items() if n not in before_pooling and not p.grad.any()]
    assert not zero, f'all-zero gradient: {zero}'
    largest = max(p.grad.abs().max() for p in params.values())
    assert all(params[n].grad.abs().max() <= 1e-6 * largest for n in before_pooling)

    check_predictions(arch, results)


def test_mmseg_pretrained_of_a_resnet_config_is_refused():
    """mmseg hands model.pretrained to the backbone: its ResNet weights must not be
    silently dropped or loaded into a PoolFormer."""
    cfg = upstream_config('mmseg', 'upernet/upernet_r50_4xb4-80k_ade20k-512x512.py')
    assert cfg.model.pretrained == 'open-mmlab://resnet50_v1c'
    swap_in_poolformer(cfg, replace(ARCHS['upernet'], ours={}))  # pretrained kept
    with pytest.raises(ValueError, match=r"Set model\.pretrained=None and give ImageNet "
                                         r"weights through the backbone's init_cfg"):
        build(cfg)
