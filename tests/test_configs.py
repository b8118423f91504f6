"""Every config builds, has the paper's parameter count and the paper's hyperparameters."""
import glob
import importlib
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmpoolformer  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
# Whole-model parameters in millions, from the paper's tables (see shared ANCHORS.md;
# S24 Semantic FPN: 25.1M, the paper's 23.2M contradicts its own S12/S36 rows).
PAPER_PARAMS = {
    'retinanet_poolformer_s12': 21.7, 'retinanet_poolformer_s24': 31.1,
    'retinanet_poolformer_s36': 40.6, 'mask_rcnn_poolformer_s12': 31.6,
    'mask_rcnn_poolformer_s24': 41.0, 'mask_rcnn_poolformer_s36': 50.5,
    'semantic_fpn_poolformer_s12': 15.7, 'semantic_fpn_poolformer_s24': 25.1,
    'semantic_fpn_poolformer_s36': 34.6, 'semantic_fpn_poolformer_m36': 59.8,
    'semantic_fpn_poolformer_m48': 77.1,
}
# The MetaFormer-family configs (issue: MetaFormer backbones); no paper numbers exist for
# them as detectors, so their backbones are checked against the official definition.
FAMILY_CONFIGS = {
    f'{task}_{family}': (task, backbone)
    for task in ('retinanet', 'mask_rcnn', 'semantic_fpn')
    for family, backbone in (('convformer_s18', 'ConvFormer'), ('caformer_s18', 'CAFormer'),
                             ('poolformer_hybrid_s12', 'PoolFormer'))
}
# The modern protocols (docs/protocols.md): UperNet 160k, Mask R-CNN and Cascade 3x.
PROTOCOL_ARCHS = {
    'upernet': [('poolformer', a) for a in ('s12', 's24', 's36', 'm36', 'm48')]
    + [(f, a) for f in ('convformer', 'caformer') for a in ('s18', 's36', 'm36', 'b36')],
    'mask_rcnn_3x': [('poolformer', a) for a in ('s12', 's24', 's36')]
    + [(f, a) for f in ('convformer', 'caformer') for a in ('s18', 's36')],
}
PROTOCOL_ARCHS['cascade_mask_rcnn_3x'] = PROTOCOL_ARCHS['mask_rcnn_3x']
PROTOCOL_CONFIGS = {f'{task}_{family}_{arch}': (task, family, arch)
                    for task, archs in PROTOCOL_ARCHS.items() for family, arch in archs}
ALL_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', '*.py')))
CONFIGS = [p for p in ALL_CONFIGS if osp.splitext(osp.basename(p))[0] in PAPER_PARAMS]
QUICKSTART = sorted(glob.glob(osp.join(REPO, 'configs', 'quickstart', '*.py')))


def name(path):
    return osp.splitext(osp.basename(path))[0]


def build(cfg):
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(cfg.model)


def test_every_paper_config_exists():
    assert sorted(map(name, ALL_CONFIGS)) == sorted([*PAPER_PARAMS, *FAMILY_CONFIGS,
                                                     *PROTOCOL_CONFIGS])


def official_backbone_params(config_name):
    """Parameters of the official definition of the config's backbone, without out norms."""
    from mmpoolformer.testing import OfficialMetaFormer
    if 'hybrid' in config_name:
        ref = OfficialMetaFormer([2, 2, 6, 2], [64, 128, 320, 512],
                                 ['Pooling', 'Pooling', 'Attention', 'Attention'],
                                 'gn1_affine', poolformer_v1=True)
    else:
        mixers = ['SepConv'] * 4 if 'convformer' in config_name else \
            ['SepConv', 'SepConv', 'Attention', 'Attention']
        ref = OfficialMetaFormer([3, 3, 9, 3], [64, 128, 320, 512], mixers, 'ln')
    return sum(p.numel() for n, p in ref.named_parameters() if not n.startswith('out_norms'))


@pytest.mark.parametrize('config_name', sorted(FAMILY_CONFIGS))
def test_family_config_builds_the_official_backbone(config_name):
    cfg = Config.fromfile(osp.join(REPO, 'configs', config_name + '.py'))
    task, family = FAMILY_CONFIGS[config_name]
    assert cfg.model.backbone.type == family
    paper = Config.fromfile(osp.join(REPO, 'configs', f'{task}_poolformer_s12.py'))
    # Same detector/segmentor around it as the paper's PoolFormer-S12 config.
    assert cfg.model.neck == paper.model.neck
    assert cfg.optim_wrapper == paper.optim_wrapper
    model = build(cfg)
    backbone = sum(p.numel() for n, p in model.backbone.named_parameters()
                   if not n.startswith('out_norms'))
    assert backbone == official_backbone_params(config_name)
    checkpoint = (cfg.model.backbone.get('init_cfg') or {}).get('checkpoint')
    if family == 'PoolFormer':
        assert checkpoint is None  # no public ImageNet weights of the hybrid
    else:
        assert checkpoint == ('https://huggingface.co/sail/dl/resolve/main/'
                              f'{family.lower()}/{family.lower()}_s18.pth')


@pytest.mark.parametrize('path', CONFIGS, ids=name)
def test_config_builds_with_paper_parameter_count(path):
    cfg = Config.fromfile(path)
    assert cfg.custom_imports == dict(imports=['mmpoolformer'], allow_failed_imports=False)
    arch = name(path).rsplit('_', 1)[1]
    backbone = cfg.model.backbone
    assert backbone.type == 'PoolFormer' and backbone.arch == arch
    assert backbone.init_cfg == dict(
        type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/'
        f'download/v1.0/poolformer_{arch}.pth.tar')
    model = build(cfg)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(params - PAPER_PARAMS[name(path)]) < 0.1, params


def schedulers(cfg):
    return {s['type']: s for s in cfg.param_scheduler}


@pytest.mark.parametrize('task,lr', [('retinanet', 1e-4), ('mask_rcnn', 2e-4)])
def test_detection_hyperparameters(task, lr):
    for arch in ('s12', 's24', 's36'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'{task}_poolformer_{arch}.py'))
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=lr, weight_decay=1e-4)
        assert cfg.train_cfg.max_epochs == 12
        sched = schedulers(cfg)
        assert sched['MultiStepLR']['milestones'] == [8, 11]
        assert sched['LinearLR']['end'] == 500 and not sched['LinearLR']['by_epoch']
        assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 16
        resize = next(t for t in cfg.train_pipeline if t['type'] == 'Resize')
        assert resize['scale'] == (1333, 800)
        neck = cfg.model.neck
        assert neck.out_channels == 256 and neck.num_outs == 5
        if task == 'retinanet':
            # Strides 8-32 only (official start_level=1): no unused stride-4 output.
            assert cfg.model.backbone.out_indices == (1, 2, 3)
            assert neck.in_channels == [128, 320, 512] and neck.start_level == 0
            assert neck.add_extra_convs == 'on_input'
        else:
            assert cfg.model.backbone.out_indices == (0, 1, 2, 3)
            assert neck.in_channels == [64, 128, 320, 512]


def test_segmentation_hyperparameters():
    for arch in ('s12', 's24', 's36', 'm36', 'm48'):
        cfg = Config.fromfile(osp.join(REPO, 'configs', f'semantic_fpn_poolformer_{arch}.py'))
        assert cfg.optim_wrapper.optimizer == dict(type='AdamW', lr=2e-4, weight_decay=1e-4)
        assert [s['type'] for s in cfg.param_scheduler] == ['PolyLR']  # no warmup
        poly = cfg.param_scheduler[0]
        assert (poly.power, poly.eta_min, poly.end) == (0.9, 0.0, 40000)
        assert cfg.train_cfg.max_iters == 40000
        assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 32
        train = {t['type']: t for t in cfg.train_dataloader.dataset.pipeline}
        assert train['RandomResize']['scale'] == (2048, 512)
        assert train['RandomResize']['ratio_range'] == (0.5, 2.0)
        assert train['RandomCrop']['crop_size'] == (512, 512)
        assert train['RandomCrop']['cat_max_ratio'] == 0.75
        assert 'PhotoMetricDistortion' in train and 'RandomFlip' in train
        test = [t['type'] for t in cfg.test_dataloader.dataset.pipeline]
        assert test[:3] == ['LoadImageFromFile', 'Resize', 'ResizeToMultiple']
        assert cfg.test_dataloader.dataset.pipeline[2]['size_divisor'] == 32
        assert cfg.model.test_cfg.mode == 'whole'
        head = cfg.model.decode_head
        assert (head.channels, head.dropout_ratio, head.num_classes) == (128, 0.1, 150)
        dims = [64, 128, 320, 512] if arch.startswith('s') else [96, 192, 384, 768]
        assert cfg.model.neck.in_channels == dims and cfg.model.neck.num_outs == 4


@pytest.mark.parametrize('path', QUICKSTART, ids=name)
def test_quickstart_configs_inherit_the_real_ones(path):
    cfg = Config.fromfile(path)
    real = Config.fromfile(osp.join(REPO, 'configs', name(path).replace('_shapes', '.py')))
    assert cfg.model.backbone.init_cfg is None  # offline: no ImageNet download
    for key in ('type', 'arch', 'out_indices'):
        assert cfg.model.backbone[key] == real.model.backbone[key]
    # The backbone-facing side of the neck (UperNet: of the heads) is the real one; the
    # quickstart recipe may narrow the FPN and its heads (RetinaNet: 128 channels, 3 levels;
    # Semantic FPN: 128 channels; Mask R-CNN: 128 channels, 4 levels; docs/quickstart.md).
    if 'neck' not in real.model:
        for head in ('decode_head', 'auxiliary_head'):
            for key in ('type', 'in_channels', 'in_index'):
                assert cfg.model[head][key] == real.model[head][key]
    else:
        for key in ('type', 'in_channels'):
            assert cfg.model.neck[key] == real.model.neck[key]
    if 'neck' in real.model and cfg.model.neck != real.model.neck:
        assert name(path) in ('retinanet_poolformer_s12_shapes',
                              'semantic_fpn_poolformer_s12_shapes',
                              'mask_rcnn_poolformer_s12_shapes')
        width = cfg.model.neck.out_channels
        heads = [cfg.model[key] for key in ('bbox_head', 'decode_head', 'rpn_head')
                 if key in cfg.model]
        if 'roi_head' in cfg.model:
            roi = cfg.model.roi_head
            heads += [roi.bbox_head, roi.mask_head]
            for extractor in (roi.bbox_roi_extractor, roi.mask_roi_extractor):
                assert extractor.out_channels == width
                assert len(extractor.featmap_strides) == cfg.model.neck.num_outs
        for head in heads:
            assert head.in_channels in (width, [width] * cfg.model.neck.num_outs)
    assert cfg.optim_wrapper.optimizer.type == real.optim_wrapper.optimizer.type
    assert build(cfg) is not None


def embed_dims(family, arch):
    from mmpoolformer.models import backbones
    cls = {'poolformer': backbones.PoolFormer, 'convformer': backbones.ConvFormer,
           'caformer': backbones.CAFormer}[family]
    settings = cls.arch_settings[arch]
    return list(settings['embed_dims']), sum(settings['layers'])


@pytest.mark.parametrize('config_name', sorted(PROTOCOL_CONFIGS))
def test_protocol_configs_follow_convnexts_recipes(config_name):
    """mmseg's ConvNeXt UperNet and mmdet's ConvNeXt 3x recipes, with our lr decay."""
    task, family, arch = PROTOCOL_CONFIGS[config_name]
    cfg = Config.fromfile(osp.join(REPO, 'configs', config_name + '.py'))
    assert cfg.custom_imports == dict(imports=['mmpoolformer'], allow_failed_imports=False)
    backbone = cfg.model.backbone
    assert backbone.type.lower() == family and backbone.arch == arch
    assert backbone.out_indices == (0, 1, 2, 3) and backbone.drop_path_rate > 0
    assert backbone.init_cfg.type == 'Pretrained'
    dims, blocks = embed_dims(family, arch)
    wrapper = cfg.optim_wrapper
    assert wrapper.type == 'AmpOptimWrapper'
    assert wrapper.constructor == 'MetaFormerDecayOptimizerConstructor'
    sched = schedulers(cfg)
    if task == 'upernet':
        assert cfg.model.pretrained is None
        assert cfg.model.decode_head.in_channels == dims
        aux = cfg.model.auxiliary_head
        assert (aux.in_index, aux.in_channels) == (2, dims[2])
        assert wrapper.optimizer == dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999),
                                         weight_decay=0.05)
        assert wrapper.paramwise_cfg == dict(decay_type='stage_wise', decay_rate=0.9)
        assert cfg.train_cfg.max_iters == 160000 and cfg.train_dataloader.batch_size == 2
        assert sched['LinearLR']['end'] == 1500 and sched['PolyLR']['end'] == 160000
        assert cfg.model.test_cfg.mode == 'slide'
    else:
        assert cfg.model.neck.in_channels == dims
        lr, r = (1e-4, 0.95) if task == 'mask_rcnn_3x' else (2e-4, 0.7)
        assert wrapper.optimizer == dict(type='AdamW', lr=lr, betas=(0.9, 0.999),
                                         weight_decay=0.05)
        # ConvNeXt-T's stem factor r ** 7, spread over this arch's blocks.
        rate = round(r ** (7 / (blocks + 1)), 3)
        assert wrapper.paramwise_cfg == dict(decay_type='layer_wise', decay_rate=rate)
        assert cfg.train_cfg.max_epochs == 36
        assert sched['MultiStepLR']['milestones'] == [27, 33]
        assert sched['LinearLR']['end'] == 1000
        assert any(t['type'] == 'RandomChoice' for t in cfg.train_dataloader.dataset.pipeline)


@pytest.mark.parametrize('config_name', ['upernet_caformer_s18', 'mask_rcnn_3x_poolformer_s12',
                                         'cascade_mask_rcnn_3x_convformer_s18'])
def test_protocol_configs_build_their_lr_decay_groups(config_name):
    import torch
    from mmengine.optim import build_optim_wrapper
    cfg = Config.fromfile(osp.join(REPO, 'configs', config_name + '.py'))
    cfg.model.backbone.init_cfg = None
    with torch.device('meta'):
        model = build(cfg)
    wrapper = dict(cfg.optim_wrapper, type='OptimWrapper')  # AmpOptimWrapper needs CUDA
    wrapper.pop('loss_scale')
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        groups = build_optim_wrapper(model, wrapper).optimizer.param_groups
    rate, top = cfg.optim_wrapper.paramwise_cfg.decay_rate, max(g['depth'] for g in groups)
    stem = [g for g in groups if g['depth'] == 0]
    assert stem and all(g['lr_scale'] == pytest.approx(rate ** top) for g in stem)
    heads = {n for g in groups if g['depth'] == top for n in g['param_names']}
    assert any(n.startswith(('decode_head.', 'roi_head.')) for n in heads)
