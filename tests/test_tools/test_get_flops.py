"""tools/analysis/get_flops.py: the paper's parameter counts, FLOPs as the official model's.

Forward passes run at small input sizes only (CPU); parameter counts do not depend on it.
"""
import re

import pytest
import torch

from mmpoolformer.apis.tensor_model import build_model
from mmpoolformer.models import PoolFormer
from mmpoolformer.testing import OfficialMetaFormer, official_from_arch

from .tool_helpers import REPO, load_tool, run

# The paper's figures live in one place: tests/test_configs.py (from shared ANCHORS.md).
PAPER_PARAMS = load_tool('tests/test_configs.py').PAPER_PARAMS
# ImageNet classifier parameters of the paper's table (ANCHORS.md), in millions.
PAPER_CLS_PARAMS = {'s12': 11.9, 's24': 21.4, 's36': 30.9, 'm36': 56.2, 'm48': 73.5}
SMALL = (64, 96)


@pytest.fixture(scope='module')
def tool():
    return load_tool('tools/analysis/get_flops.py')


@pytest.mark.parametrize('name', sorted(PAPER_PARAMS))
def test_parameters_are_the_papers(tool, name):
    # FLOPs at a small size for the smallest model of each detector; parameters for all.
    counts_flops = name.endswith('s12')
    result = tool.complexity(tool.load(f'{REPO}/configs/{name}.py'), SMALL, counts_flops)
    assert abs(result['params'] / 1e6 - PAPER_PARAMS[name]) <= 0.05, result['params']
    # The backbone: the paper's classifier less its head (final norm + fc to 1000
    # classes) plus the output norms of the stages the detector reads.
    arch = name.rsplit('_', 1)[1]
    c = PoolFormer.arch_settings[arch]['embed_dims']
    outputs = (1, 2, 3) if name.startswith('retinanet') else (0, 1, 2, 3)
    expected = PAPER_CLS_PARAMS[arch] * 1e6 - (2 * c[-1] + 1001 * c[-1] + 1000) + \
        sum(2 * c[i] for i in outputs)
    assert abs(result['backbone_params'] - expected) <= 0.05e6
    assert result['backbone_type'] == 'PoolFormer'
    if counts_flops:
        assert 0 < result['backbone_flops'] < result['flops']


def official_flops(tool, model, x):
    analyzer = tool.count_flops(model.eval(), (x, ))
    return analyzer.total(), dict(analyzer.by_operator())


@pytest.mark.parametrize('arch', ['s12', 'm36'])
def test_backbone_flops_equal_the_official_definitions(tool, arch):
    """Our fused kernels are counted as the plain layers of the official model."""
    cfg = tool.load(f'{REPO}/configs/semantic_fpn_poolformer_{arch}.py')
    result = tool.complexity(cfg, SMALL)
    x = torch.randn(1, 3, *result['input_shape'][2:])
    total, _ = official_flops(tool, official_from_arch(PoolFormer.arch_settings[arch]), x)
    assert result['backbone_flops'] == total


def test_attention_flops_equal_the_explicit_matmuls(tool):
    """The hybrid PoolFormer's fused attention counts as the official q @ k^T and a @ v."""
    cfg = tool.load(f'{REPO}/configs/semantic_fpn_poolformer_hybrid_s12.py')
    model = build_model(cfg).backbone
    x = torch.randn(1, 3, *SMALL)
    ours = dict(tool.count_flops(model, (x, )).by_operator())
    ref = OfficialMetaFormer([2, 2, 6, 2], [64, 128, 320, 512],
                             ['Pooling', 'Pooling', 'Attention', 'Attention'], 'gn1_affine',
                             poolformer_v1=True)
    _, theirs = official_flops(tool, ref, x)
    assert ours['scaled_dot_product_attention'] == theirs['matmul'] > 0
    assert (ours['conv'], ours['linear']) == (theirs['conv'], theirs['linear'])


def test_command_line_report(tool):
    config = 'configs/retinanet_poolformer_s12.py'
    rc, log = run('tools/analysis/get_flops.py', config, '--shape', '100', '70')
    assert rc == 0, log[-2000:]
    # mmdet pads to multiples of 32; the report says so.
    assert 'input 1x3x128x96 (--shape 100 70, padded)' in log
    model = re.search(r'^model +([\d.]+)M +([\d.]+)G$', log, re.M)
    backbone = re.search(r'^backbone +([\d.]+)M +([\d.]+)G$', log, re.M)
    result = tool.complexity(tool.load(f'{REPO}/{config}'), (100, 70))
    assert float(model.group(1)) == round(result['params'] / 1e6, 2)
    assert float(model.group(2)) == round(result['flops'] / 1e9, 2)
    assert float(backbone.group(1)) == round(result['backbone_params'] / 1e6, 2)
    assert float(backbone.group(2)) == round(result['backbone_flops'] / 1e9, 2)
    assert 'RetinaNet (mmdet), backbone PoolFormer' in log
    rc, log = run('tools/analysis/get_flops.py', 'configs/nope.py')
    assert rc == 1 and log.strip() == 'ERROR: config not found: configs/nope.py'


def test_default_shapes_are_the_documented_ones(tool):
    assert tool.DEFAULT_SHAPES == {'mmdet': (1280, 800), 'mmseg': (512, 512)}
    doc = tool.__doc__
    assert '1280 x 800 for detection' in doc and '512 x 512 for segmentation' in doc
