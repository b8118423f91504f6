"""What users plug in from outside the package, and the checks upstream tools run too."""
import os
import os.path as osp
import textwrap

import pytest
import torch

from .test_train_test import REPO, det_options, run, seg_options

USER_MIXER = '''
import torch
import torch.nn as nn

from mmpoolformer.registry import TOKEN_MIXERS


@TOKEN_MIXERS.register_module()
class MaxMinusX(nn.Module):
    """A user's mixer: alpha * (3x3 max pool - x), alpha learnable."""

    def __init__(self, dim, alpha=0.5):
        super().__init__()
        self.alpha = nn.Parameter(torch.full((dim, ), float(alpha)))

    def forward(self, x):  # (B, H, W, C)
        pooled = nn.functional.max_pool2d(x.permute(0, 3, 1, 2), 3, 1, 1)
        return self.alpha * (pooled.permute(0, 2, 3, 1) - x)
'''

CONFIGS = {
    'mmdet': ('configs/quickstart/retinanet_poolformer_s12_shapes.py', det_options),
    'mmseg': ('configs/quickstart/semantic_fpn_poolformer_s12_shapes.py', seg_options),
}


@pytest.mark.slow
@pytest.mark.parametrize('scope', list(CONFIGS))
def test_a_mixer_from_outside_the_package_trains_through_the_downstream_registry(
        scope, shapes, tmp_path):
    (tmp_path / 'my_mixers.py').write_text(USER_MIXER)
    config, options = CONFIGS[scope]
    cfg = tmp_path / 'with_my_mixer.py'
    cfg.write_text(textwrap.dedent(f"""
        _base_ = ['{osp.join(REPO, config)}']
        custom_imports = dict(imports=['mmpoolformer', 'my_mixers'],
                              allow_failed_imports=False)
        model = dict(backbone=dict(token_mixers=[
            dict(type='Pooling'), dict(type='Pooling'),
            dict(type='MaxMinusX', alpha=0.25), dict(type='MaxMinusX', alpha=0.25)]))
    """))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), REPO]))
    work = tmp_path / 'work'
    rc, log = run('tools/train.py', str(cfg), '--work-dir', str(work), '--cfg-options',
                  *options(shapes, iters=3), env=env)
    assert rc == 0, log[-3000:]
    state = torch.load(work / 'iter_3.pth', map_location='cpu', weights_only=False)
    alpha = state['state_dict']['backbone.stages.2.blocks.0.token_mixer.alpha']
    # Built from the user's class, through the scope's registry, and trained.
    assert alpha.shape == (320, ) and not torch.allclose(alpha, torch.full_like(alpha, 0.25))


def test_an_unknown_mixer_names_the_valid_ones_and_the_closest():
    from mmpoolformer.models import PoolFormer
    with pytest.raises(KeyError, match=r"unknown token mixer 'Poolling' \(did you mean "
                                       r"'Pooling'\?\); valid token mixers: Attention, "
                                       r'DWConv, Identity, Pooling, RandomMixing, SepConv'):
        PoolFormer('s12', token_mixers=dict(type='Poolling'))
    with pytest.raises(KeyError, match=r"unknown norm type 'gn' \(did you mean 'GN'\?\)"):
        PoolFormer('s12', norm_cfg=dict(type='gn', num_groups=1))


@pytest.mark.slow
@pytest.mark.parametrize('scope', list(CONFIGS))
def test_upstream_train_tool_stops_before_the_first_iteration_on_a_neck_mismatch(
        scope, shapes, tmp_path):
    """The base configs' hook does it: mmdet's and mmseg's own tools/train.py."""
    package = __import__(scope)
    tool = osp.join(osp.dirname(package.__file__), '.mim', 'tools', 'train.py')
    config, options = CONFIGS[scope]
    wrong = [128, 256, 512] if scope == 'mmdet' else [64, 128, 256, 512]
    right = [128, 320, 512] if scope == 'mmdet' else [64, 128, 320, 512]
    rc, log = run(tool, config, '--work-dir', str(tmp_path), '--cfg-options',
                  *options(shapes), f'model.neck.in_channels={wrong}')
    assert rc != 0
    assert f'in_channels {wrong} disagree with the output channels' in log
    assert str(right) in log
    assert 'Iter(train)' not in log
