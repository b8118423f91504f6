"""tools/convert_checkpoint.py on synthetic checkpoints in every source layout.

The sources are built independently of the converter: the official backbone keys come from
the plain reference implementation (``mmpoolformer.testing``), the timm keys are written out
here from timm's naming, and the official detectors' necks are built with the official
config's arguments. A conversion is right when the converted model computes what the
source model computes.
"""
import importlib
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmpoolformer  # noqa: F401
from mmpoolformer.models import PoolFormer
from mmpoolformer.testing import (
    official_from_arch,
    official_imagenet_checkpoint,
    randomize_,
    to_mmpretrain_layout,
)

from .tool_helpers import REPO, load_tool, run

S12 = PoolFormer.arch_settings['s12']
QUICKSTART = {
    # The official RetinaNet checkpoints have COCO's 256-channel FPN and head.
    'retinanet': 'tests/test_tools/configs/retinanet_poolformer_s12_shapes_coco_head.py',
    'mask_rcnn': 'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py',
    'semantic_fpn': 'configs/quickstart/semantic_fpn_poolformer_s12_shapes.py',
}
CLASSES = ('circle', 'square', 'triangle')


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/convert_checkpoint.py')


def convert(tool, capsys, *argv):
    """Run the tool in-process; returns (exit message or None, stdout)."""
    try:
        tool.main([str(a) for a in argv])
        code = None
    except SystemExit as e:
        code = str(e.code)
    return code, capsys.readouterr().out


# ------------------------------------------------------------------ ImageNet layouts
def official_imagenet(seed=0, arch=S12):
    return official_imagenet_checkpoint(arch, seed)


def to_timm(sd):
    """timm's metaformer.py names (ANCHORS.md), written out from the official ones."""
    out = {}
    for key, v in sd.items():
        parts = key.split('.')
        if key.startswith('patch_embed.proj.'):
            out['stem.conv.' + parts[-1]] = v
        elif key.startswith('network.') and parts[2] == 'proj':
            out[f'stages.{(int(parts[1]) + 1) // 2}.downsample.conv.{parts[-1]}'] = v
        elif key.startswith('network.'):
            stage, block, rest = int(parts[1]) // 2, parts[2], '.'.join(parts[3:])
            if rest.startswith('layer_scale_'):
                rest, v = f'layer_scale{rest[-1]}.scale', v[:, None, None]
            out[f'stages.{stage}.blocks.{block}.{rest}'] = v
        elif key.startswith('norm.'):
            out['head.norm.' + parts[-1]] = v
        else:
            out['head.fc.' + parts[-1]] = v
    return out


def reference_features(sd, x, out_indices=(0, 1, 2, 3)):
    """The official model's outputs; its output norms at init (ImageNet has none)."""
    ref = official_from_arch(S12, out_indices=out_indices)
    ref.load_state_dict({k: v for k, v in sd.items() if k.startswith(('patch', 'network'))},
                        strict=False)
    with torch.no_grad():
        return ref.eval()(x)


@pytest.mark.parametrize('layout', ['official', 'mmpretrain', 'timm'])
def test_imagenet_checkpoint_becomes_our_backbone_layout(tool, capsys, tmp_path, layout):
    sd = official_imagenet()
    src = tmp_path / f'{layout}.pth'
    layouts = {'official': sd, 'mmpretrain': to_mmpretrain_layout(sd), 'timm': to_timm(sd)}
    torch.save(layouts[layout], src)
    dst = tmp_path / 'out' / 'converted.pth'
    code, out = convert(tool, capsys, src, dst, '--arch', 's12')
    assert code is None, out
    model = PoolFormer('s12')
    converted = torch.load(dst, weights_only=True)['state_dict']
    missing, unexpected = model.load_state_dict(converted, strict=False)
    assert unexpected == [] and sorted(missing) == sorted(
        f'out_norms.{i}.{p}' for i in range(4) for p in ('weight', 'bias'))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        got = model.eval()(x)
    for e, g in zip(reference_features(sd, x), got):
        assert (e - g).abs().max().item() <= 1e-5
    # The report: every key with its source, the classifier dropped, the norms at init.
    n_backbone = len([k for k in sd if k.startswith(('patch_embed', 'network'))])
    assert f'{n_backbone} keys converted' in out and '4 dropped, 8 left at init' in out
    stem_src = {'official': 'patch_embed.proj.weight', 'mmpretrain': 'patch_embed.proj.weight',
                'timm': 'stem.conv.weight'}[layout]
    assert any(line.split()[:3] == [stem_src, '->' if layout != 'timm' else '==',
                                    'stem.conv.weight'] for line in out.splitlines()), out
    assert 'out_norms.3.bias' in out and 'left at init' in out
    # The package's own strict loader takes the file as init_cfg.
    again = PoolFormer('s12', init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    again.init_weights()
    assert torch.equal(again.stages[2].blocks[5].mlp.fc2.weight,
                       model.stages[2].blocks[5].mlp.fc2.weight)


def test_imagenet_checkpoint_of_another_arch_is_refused(tool, capsys, tmp_path):
    src, dst = tmp_path / 's12.pth', tmp_path / 'm36.pth'
    torch.save(official_imagenet(), src)
    code, out = convert(tool, capsys, src, dst, '--config',
                        f'{REPO}/configs/semantic_fpn_poolformer_m36.py')
    assert code.startswith('ERROR: shape mismatch for stem.conv.weight') and \
        '(64, 3, 7, 7)' in code and '(96, 3, 7, 7)' in code and 'nothing written' in code
    assert not dst.exists() and os.listdir(tmp_path) == ['s12.pth']


# ------------------------------------------------------------------ whole models
def build(config, **overrides):
    cfg = Config.fromfile(f'{REPO}/{config}')
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(cfg.model)


def official_dense(case, seed=0, arch=S12):
    """A whole-model checkpoint as the official mmdet 2.x / mmseg 0.x code saved it."""
    backbone = randomize_(official_from_arch(arch, out_indices=(0, 1, 2, 3)), seed)
    sd = {'backbone.' + k: v for k, v in backbone.state_dict().items()}
    ours = build(QUICKSTART[case])
    if case == 'retinanet':
        # The official RetinaNet: all four stages to an FPN that starts at level 1.
        from mmdet.models.necks import FPN
        neck = FPN(in_channels=arch['embed_dims'], out_channels=256, start_level=1,
                   add_extra_convs='on_input', num_outs=5)
        sd.update({'neck.' + k: v for k, v in neck.state_dict().items()})
    else:
        sd.update({k: v for k, v in ours.state_dict().items() if k.startswith('neck.')})
    gen = torch.Generator().manual_seed(seed + 1)
    for k, v in ours.state_dict().items():
        if not k.startswith(('backbone.', 'neck.')):
            sd[k] = torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
    version = {'semantic_fpn': ('mmseg_version', '0.20.2')}.get(case, ('mmdet_version',
                                                                       '2.19.0'))
    meta = {version[0]: version[1], 'CLASSES': CLASSES}
    if case == 'semantic_fpn':
        meta.update(CLASSES=('background', ) + CLASSES, PALETTE=[[0, 0, 0]] * 4)
    return {'meta': meta, 'state_dict': sd, 'optimizer': {'state': {}, 'param_groups': []}}


@pytest.mark.parametrize('case', list(QUICKSTART))
def test_official_dense_checkpoint_loads_strictly_into_the_config(tool, capsys, tmp_path,
                                                                  case):
    source = official_dense(case)
    src, dst = tmp_path / 'official.pth', tmp_path / 'converted.pth'
    torch.save(source, src)
    code, out = convert(tool, capsys, src, dst, '--config', f'{REPO}/{QUICKSTART[case]}')
    assert code is None, code
    saved = torch.load(dst, weights_only=True)
    model = build(QUICKSTART[case])
    model.load_state_dict(saved['state_dict'], strict=True)
    # The backbone computes what the official one computes with the same weights.
    official = official_from_arch(S12, out_indices=(0, 1, 2, 3))
    official.load_state_dict({k[9:]: v for k, v in source['state_dict'].items()
                              if k.startswith('backbone.')})
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        expected = official.eval()(x)
        got = model.backbone.eval()(x)
    outputs = model.backbone.out_indices
    assert len(got) == len(outputs)
    for i, g in zip(outputs, got):
        assert (expected[i] - g).abs().max().item() <= 1e-5
    # Necks and heads are copied as they are.
    for k, v in source['state_dict'].items():
        if not k.startswith('backbone.'):
            assert torch.equal(saved['state_dict'][k], v), k
    classes = list(source['meta']['CLASSES'])
    assert saved['meta']['dataset_meta']['classes'] == classes
    if case == 'retinanet':
        # Only the stride-4 norm, which RetinaNet's FPN never reads, is left out.
        assert 'backbone.norm0.weight xx dropped: output norm of stage 0' in \
            ' '.join(out.split())
        assert '2 dropped' in out
    else:
        assert '0 dropped' in out
    assert 'backbone.norm6.weight -> backbone.out_norms.3.weight' in ' '.join(out.split())


def test_dense_checkpoint_mismatches_are_refused(tool, capsys, tmp_path):
    config = f'{REPO}/{QUICKSTART["retinanet"]}'
    good = official_dense('retinanet')
    cases = {}
    missing = {**good, 'state_dict': dict(good['state_dict'])}
    del missing['state_dict']['bbox_head.retina_cls.bias']
    cases['missing'] = (missing, 'checkpoint lacks: bbox_head.retina_cls.bias')
    extra = {**good, 'state_dict': dict(good['state_dict'])}
    extra['state_dict']['bbox_head.retina_iou.weight'] = torch.zeros(3)
    cases['extra'] = (extra, 'no place for: bbox_head.retina_iou.weight')
    cases['s24'] = (official_dense('retinanet', arch=PoolFormer.arch_settings['s24']),
                    'no place for: backbone.network.0.2.')
    for name, (checkpoint, needle) in cases.items():
        src, dst = tmp_path / f'{name}.pth', tmp_path / f'{name}_out.pth'
        torch.save(checkpoint, src)
        code, _ = convert(tool, capsys, src, dst, '--config', config)
        assert code is not None and code.startswith('ERROR: the checkpoint does not fit '
                                                    'RetinaNet with PoolFormer s12'), code
        assert needle in code and code.endswith('nothing written'), (name, code)
        assert not dst.exists()
    src = tmp_path / 'missing.pth'
    code, _ = convert(tool, capsys, src, tmp_path / 'x.pth', '--arch', 's12')
    assert code == 'ERROR: this is a whole detector/segmentor checkpoint: give the --config ' \
                   'it must load into; nothing written'


def test_malicious_pickle_is_refused_before_anything_runs(tmp_path):
    marker = tmp_path / 'pwned'
    src, dst = tmp_path / 'evil.pth', tmp_path / 'out.pth'

    class Evil:
        def __reduce__(self):
            return (os.system, (f'touch {marker}', ))

    torch.save({'state_dict': {'backbone.stem.conv.weight': Evil()}}, src)
    rc, log = run('tools/convert_checkpoint.py', str(src), str(dst), '--arch', 's12')
    assert rc == 1 and 'Traceback' not in log
    assert f'ERROR: refused to load {src}: it is not a plain-data checkpoint' in log
    assert 'system' in log  # names what it refused
    assert not marker.exists() and not dst.exists()
