"""Layer-wise and stage-wise lr decay: groups, formula, upstream train tools, resume."""
import re

import pytest
import torch
import torch.nn as nn
from mmengine.optim import build_optim_wrapper

from mmpoolformer.engine import MetaFormerDecayOptimizerConstructor
from mmpoolformer.models import backbones

FAMILIES = [backbones.PoolFormer, backbones.PoolFormerV2, backbones.IdentityFormer,
            backbones.RandFormer, backbones.ConvFormer, backbones.CAFormer]
CASES = [(family, arch) for family in FAMILIES for arch in family.arch_settings]
LR, WD = 2e-4, 0.05


class Detector(nn.Module):
    """A backbone with something above it (a neck, a head), as mmdet/mmseg models have."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
        self.neck = nn.Conv2d(backbone.embed_dims[-1], 8, 1)
        self.head = nn.Sequential(nn.GroupNorm(1, 8), nn.Linear(8, 2))


def optim_cfg(decay_type, rate=0.9, **paramwise):
    return dict(optimizer=dict(type='AdamW', lr=LR, weight_decay=WD),
                constructor='MetaFormerDecayOptimizerConstructor',
                paramwise_cfg=dict(decay_rate=rate, decay_type=decay_type, **paramwise))


def expected_depth(name, layers, decay_type):
    """The depth the docs promise, from the parameter's name alone."""
    top = (sum(layers) if decay_type == 'layer_wise' else len(layers)) + 1
    if name.startswith('backbone.stem.'):
        return 0, top
    found = re.match(r'backbone\.stages\.(\d+)\.(downsample|blocks\.(\d+))\.', name)
    if found is None:  # output norms, neck, head
        return top, top
    stage, block = int(found[1]), int(found[3] or 0)
    if decay_type == 'stage_wise':
        return stage + 1, top
    return sum(layers[:stage]) + block + 1, top


@pytest.mark.parametrize('decay_type', ['layer_wise', 'stage_wise'])
@pytest.mark.parametrize('family,arch', CASES, ids=[f'{f.__name__}-{a}' for f, a in CASES])
def test_every_trainable_parameter_is_in_one_group_with_the_formulas_lr_and_decay(
        family, arch, decay_type):
    with torch.device('meta'):
        model = Detector(family(arch, frozen_stages=1))
    groups = build_optim_wrapper(model, optim_cfg(decay_type)).optimizer.param_groups
    seen = {}
    for g in groups:
        for name, p in zip(g['param_names'], g['params']):
            assert id(p) not in seen, f'{name} is in two groups'
            seen[id(p)] = name
            depth, top = expected_depth(name, family.arch_settings[arch]['layers'], decay_type)
            assert g['depth'] == depth, name
            assert g['lr'] == pytest.approx(LR * 0.9 ** (top - depth), rel=1e-12), name
            # No weight decay on norms, biases, layer/res scales, StarReLU's scalars.
            assert g['weight_decay'] == (WD if p.ndim > 1 else 0.), name
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert set(seen) == trainable  # every trainable parameter, and no frozen one
    assert any(not p.requires_grad for p in model.backbone.stem.parameters())


def test_no_decay_covers_the_scalars_and_scales_by_name():
    """The 1-D rule, read the other way: each kind of parameter that must not decay."""
    with torch.device('meta'):
        model = Detector(backbones.CAFormer('s18'))
    groups = build_optim_wrapper(model, optim_cfg('stage_wise')).optimizer.param_groups
    wd = {n: g['weight_decay'] for g in groups for n in g['param_names']}
    for pattern in (r'\.norm1\.weight$', r'\.bias$', r'res_scale\d\.scale$',
                    r'mlp\.act\.scale$', r'mlp\.act\.bias$', r'out_norms\.'):
        names = [n for n in wd if re.search(pattern, n)]
        assert names, pattern
        assert all(wd[n] == 0 for n in names), pattern
    assert wd['backbone.stages.0.blocks.0.mlp.fc1.weight'] == WD


def test_rate_one_is_the_plain_optimizer():
    model = Detector(backbones.PoolFormer('s12'))
    groups = build_optim_wrapper(model, optim_cfg('layer_wise', rate=1)).optimizer.param_groups
    assert {g['lr'] for g in groups} == {LR}
    assert len(groups) == 2 * (sum(model.backbone.arch['layers']) + 2)


@pytest.mark.parametrize('paramwise,message', [
    (dict(num_layers=12), 'num_layers is not needed'),
    (dict(custom_keys={}), r"unknown: \['custom_keys'\]"),
    (dict(decay_type='block_wise'), "decay_type must be one of"),
    (dict(decay_rate=1.5), r'decay_rate must be a number in \(0, 1\]'),
])
def test_bad_paramwise_cfg_is_refused_in_one_message(paramwise, message):
    model = Detector(backbones.PoolFormer('s12'))
    cfg = optim_cfg('stage_wise')
    cfg['paramwise_cfg'].update(paramwise)
    with pytest.raises(ValueError, match=message):
        build_optim_wrapper(model, cfg)


def test_a_model_without_a_metaformer_backbone_is_refused():
    model = nn.Module()
    model.backbone = nn.Conv2d(3, 8, 3)
    with pytest.raises(TypeError, match='needs a MetaFormer backbone.*has Conv2d'):
        MetaFormerDecayOptimizerConstructor(optim_cfg('stage_wise'),
                                            optim_cfg('stage_wise')['paramwise_cfg'])(model)


def test_resume_restores_the_groups():
    """The optimizer's state_dict round-trips through a fresh constructor's groups."""
    torch.manual_seed(0)
    model = Detector(backbones.ConvFormer('s18'))
    first = build_optim_wrapper(model, optim_cfg('layer_wise'))
    x = torch.randn(1, 3, 64, 64)
    first.update_params(model.neck(model.backbone(x)[-1]).square().mean())
    second = build_optim_wrapper(model, optim_cfg('layer_wise'))
    second.load_state_dict(first.state_dict())
    for a, b in zip(first.optimizer.param_groups, second.optimizer.param_groups):
        assert [id(p) for p in a['params']] == [id(p) for p in b['params']]
        assert {k: v for k, v in a.items() if k != 'params'} == \
            {k: v for k, v in b.items() if k != 'params'}
    assert first.optimizer.state_dict()['state'].keys() == \
        second.optimizer.state_dict()['state'].keys()
