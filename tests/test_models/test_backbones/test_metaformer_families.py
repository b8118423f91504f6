"""The MetaFormer families: architectures, checkpoints, mixers, sizes, memory.

Their numerical parity with the official definitions is in ``tests/test_models/test_parity.py``.
"""
import functools

import pytest
import torch

from mmpoolformer.checkpoint import CheckpointError, convert_state_dict
from mmpoolformer.models import (
    CAFormer,
    ConvFormer,
    InputTooLargeError,
    PoolFormer,
    RandFormer,
)
from mmpoolformer.models.layers import Attention, RandomMixing
from mmpoolformer.testing import FAMILIES as parity_families
from mmpoolformer.testing import INPUT_SIZES, build_official, build_ours, paired, randomize_

# name -> (our backbone, the official definition), built by mmpoolformer.testing
FAMILIES = {
    family: (functools.partial(build_ours, family), functools.partial(build_official, family))
    for family in parity_families if family != 'PoolFormer'
}


def pair(family, **kwargs):
    ours, ref = paired(family, **kwargs)
    return ours, ref, INPUT_SIZES[family]


def test_families_follow_the_official_architectures():
    """StarReLU, no MLP biases, no layer scale, res scale in stages 2-3, bias-free norms."""
    model = ConvFormer('s18')
    keys = set(model.state_dict())
    block = 'stages.{}.blocks.0.'
    assert {block.format(0) + 'mlp.act.scale', block.format(0) + 'mlp.act.bias'} <= keys
    assert not any(k.endswith(('mlp.fc1.bias', 'norm1.bias')) or 'layer_scale' in k
                   for k in keys)
    assert block.format(1) + 'res_scale1.scale' not in keys
    assert block.format(2) + 'res_scale1.scale' in keys
    assert 'stem.post_norm.weight' in keys and 'stem.post_norm.bias' not in keys
    assert 'stages.1.downsample.pre_norm.weight' in keys
    assert [len(s.blocks) for s in ConvFormer('b36').stages] == [3, 12, 18, 3]
    assert ConvFormer('m36').embed_dims == [96, 192, 384, 576]
    attention = CAFormer('s18').stages[2].blocks[0].token_mixer
    assert isinstance(attention, Attention) and attention.num_heads == 320 // 32
    with pytest.raises(KeyError, match='valid archs: s18, s36, m36, b36'):
        CAFormer('s12')


def timm_layout(state_dict, attention_stages=()):
    """Our keys in timm's layout: stem/downsample norm names, 1x1 convs, a head."""
    out = {}
    for key, value in state_dict.items():
        if key.startswith('out_norms.'):
            continue
        key = key.replace('stem.post_norm.', 'stem.norm.').replace('.pre_norm.', '.norm.')
        stage = int(key.split('.')[1]) if key.startswith('stages.') else -1
        if stage not in attention_stages and value.dim() == 2 and \
                key.endswith(('fc1.weight', 'fc2.weight', 'pwconv1.weight', 'pwconv2.weight')):
            value = value[:, :, None, None]
        out[key] = value
    out['head.norm.weight'] = torch.ones(8)
    out['head.fc.fc1.weight'] = torch.ones(8, 8)
    return out


@pytest.mark.parametrize('family', ['ConvFormer', 'CAFormer', 'PoolFormerV2'])
@pytest.mark.parametrize('layout', ['official-metaformer', 'timm'])
def test_imagenet_checkpoints_load_in_both_layouts(family, layout, tmp_path):
    ours, ref, _ = pair(family)
    source = randomize_(FAMILIES[family][1](), seed=1)
    if layout == 'official-metaformer':
        checkpoint = {k: v for k, v in source.state_dict().items()
                      if not k.startswith('out_norms')}
        checkpoint.update({'norm.weight': torch.ones(512), 'head.weight': torch.ones(9, 512)})
    else:
        staged = convert_state_dict(source.state_dict(), with_out_norms=False)[0]
        checkpoint = timm_layout(staged, attention_stages=(2, 3) if family == 'CAFormer'
                                 else ())
    path = tmp_path / 'imagenet.pth'
    torch.save({'state_dict': checkpoint} if layout == 'timm' else checkpoint, path)
    model = FAMILIES[family][0](init_cfg=dict(type='Pretrained', checkpoint=str(path)))
    model.init_weights()
    expected = convert_state_dict(source.state_dict(), with_out_norms=False)[0]
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in expected.items())
    assert set(state) - set(expected) == {k for k in state if k.startswith('out_norms.')}


def test_checkpoint_of_another_arch_or_family_is_refused(tmp_path):
    path = tmp_path / 'convformer_s18.pth'
    torch.save(ConvFormer('s18').state_dict(), path)
    with pytest.raises(CheckpointError, match='has backbone weights this model has no place '
                       'for: stages.2.blocks.0.token_mixer.act1.bias'):
        CAFormer('s18', init_cfg=dict(type='Pretrained', checkpoint=str(path))).init_weights()
    with pytest.raises(CheckpointError, match='shape mismatch for stem.conv.weight'):
        ConvFormer('m36', init_cfg=dict(type='Pretrained',
                                        checkpoint=str(path))).init_weights()


def test_random_mixing_is_resolution_independent():
    mixer = RandomMixing(num_tokens=49)
    # The native grid uses the official matrix as it is.
    assert mixer.mixing_matrix(7, 7) is mixer.random_matrix
    for h, w in [(7, 7), (3, 5), (13, 29), (1, 1)]:
        matrix = mixer.mixing_matrix(h, w)
        assert matrix.shape == (h * w, h * w) and (matrix >= 0).all()
        torch.testing.assert_close(matrix.sum(-1), torch.ones(h * w))
        # Row-stochastic: a constant map stays constant at any size.
        x = torch.full((2, h, w, 4), 3.0)
        torch.testing.assert_close(mixer(x), x)
    # Upsampling by 2 keeps the official mixing pattern: the weight a query cell gives to
    # a key cell (summed over the 2x2 key sub-cells, averaged over the query sub-cells)
    # follows the official matrix.
    big = mixer.mixing_matrix(14, 14).reshape(7, 2, 7, 2, 7, 2, 7, 2)
    coarse = big.sum(dim=(5, 7)).mean(dim=(1, 3)).reshape(49, 49)
    assert torch.corrcoef(torch.stack([coarse.flatten(),
                                       mixer.random_matrix.flatten()]))[0, 1] > 0.5
    with pytest.raises(ValueError, match='square number'):
        RandomMixing(num_tokens=50)


def test_attention_at_a_detection_stage_size_matches_explicit_softmax():
    """Stage 2 of a 1333 x 800 input: 50 x 84 = 4200 tokens, through the fused kernel."""
    torch.manual_seed(0)
    mixer = Attention(dim=64, head_dim=32).eval()
    x = torch.randn(1, 50, 84, 64)
    with torch.no_grad():
        out = mixer(x)
        qkv = mixer.qkv(x).reshape(1, -1, 3, 2, 32).permute(2, 0, 3, 1, 4)
        attn = (qkv[0] @ qkv[1].transpose(-2, -1) * 32 ** -0.5).softmax(-1)
        ref = mixer.proj((attn @ qkv[2]).transpose(1, 2).reshape(1, 50, 84, 64))
    assert ((out - ref).abs().max() / ref.abs().max()).item() < 1e-5


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('size', [(3, 3), (33, 17), (97, 130)])
def test_odd_input_sizes(family, size):
    model = FAMILIES[family][0]().eval()
    h, w = size
    expected = []
    h, w = (h - 3) // 4 + 1, (w - 3) // 4 + 1
    for _ in range(4):
        expected.append((h, w))
        h, w = (h - 1) // 2 + 1, (w - 1) // 2 + 1
    with torch.no_grad():
        outs = model(torch.randn(1, 3, *size))
    assert [tuple(o.shape[2:]) for o in outs] == expected
    assert all(torch.isfinite(o).all() for o in outs)


@pytest.mark.parametrize('family', parity_families)
def test_outputs_are_contiguous_nchw(family):
    """Necks and heads get plain NCHW memory, whatever the input's layout: mmcv 2.1's
    RoIAlign, for one, reads data_ptr() as NCHW whatever the strides (Mask R-CNN pooled
    scrambled features while the outputs were channels-last views)."""
    model = build_ours(family, out_indices=(0, 1, 2, 3))
    x = torch.randn(1, 3, *INPUT_SIZES[family])
    for inputs in (x, x.contiguous(memory_format=torch.channels_last)):
        outs = model(inputs)
        assert len(outs) == 4 and all(o.is_contiguous() for o in outs)


def test_mask_rcnn_roi_align_gets_contiguous_features():
    """What Mask R-CNN's RoIAlign reads: the FPN keeps its input's memory format."""
    import os.path as osp

    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    init_default_scope('mmdet')
    repo = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    cfg = Config.fromfile(osp.join(repo, 'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py'))
    model = MODELS.build(cfg.model).eval()
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 96))
    assert all(f.is_contiguous() for f in feats)


def test_out_channels_last_returns_the_same_features_in_channels_last_memory():
    model = PoolFormer('s12', out_channels_last=True).eval()
    plain = PoolFormer('s12')
    plain.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        outs, want = model(x), plain.eval()(x)
    for o, w in zip(outs, want):
        assert o.is_contiguous(memory_format=torch.channels_last) and not o.is_contiguous()
        assert torch.equal(o, w)


def test_mask_rcnn_with_channels_last_features_computes_the_same_losses():
    """Channels-last features flow through the FPN into mmcv's RoIAlign, which ignores
    strides; mmpoolformer makes it read a contiguous copy, so the RoI losses are those of
    contiguous features."""
    import os.path as osp

    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmengine.structures import InstanceData
    init_default_scope('mmdet')
    repo = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))
    cfg = Config.fromfile(osp.join(repo, 'configs/quickstart/mask_rcnn_poolformer_s12_shapes.py'))
    cfg.model.train_cfg.rpn_proposal.max_per_img = 64
    losses = []
    for channels_last in (False, True):
        cfg.model.backbone.out_channels_last = channels_last
        torch.manual_seed(0)
        model = MODELS.build(cfg.model).train()
        sample = DetDataSample(metainfo=dict(img_shape=(96, 128), pad_shape=(96, 128),
                                             batch_input_shape=(96, 128)))
        sample.gt_instances = InstanceData(
            bboxes=torch.tensor([[10., 12., 60., 70.], [40., 20., 120., 90.]]),
            labels=torch.tensor([0, 2]),
            masks=BitmapMasks(
                torch.ones(2, 96, 128, dtype=torch.uint8).numpy(), 96, 128))
        torch.manual_seed(1)
        out = model.loss(torch.randn(1, 3, 96, 128), [sample])
        losses.append({k: sum(v) if isinstance(v, list) else v for k, v in out.items()})
    for key in ('loss_cls', 'loss_bbox', 'loss_mask'):
        torch.testing.assert_close(losses[1][key], losses[0][key], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_caformer_at_detection_size():
    """Attention stages at the paper's detection input (1333 x 800, odd height)."""
    model = CAFormer('s18').eval()
    with torch.no_grad():
        outs = model(torch.randn(1, 3, 801, 1333))
    assert [tuple(o.shape[1:]) for o in outs] == [
        (64, 200, 333), (128, 100, 167), (320, 50, 84), (512, 25, 42)]
    assert all(torch.isfinite(o).all() for o in outs)


def test_quadratic_memory_is_refused_before_any_computation():
    # Attention with dropout at stride 4 of a detection input: (heads, N, N) matrices.
    model = CAFormer('s18', token_mixers=[dict(type='Attention', attn_drop=0.1)] * 4)
    model.train()
    model.stem.register_forward_pre_hook(lambda *_: pytest.fail('the forward started'))
    with pytest.raises(InputTooLargeError, match=r'stage 0 \(Attention, 66,600 tokens\)'):
        model(torch.zeros(2, 3, 800, 1333))
    # The same model fits at small sizes, and in inference (fused kernel, linear memory)
    # at any size: the estimate is zero there.
    assert model.quadratic_memory(2, 800, 1333, training=False) == []
    # An explicit limit makes the check independent of this machine's free memory.
    rand = RandFormer('s12', token_mixers=[dict(type='RandomMixing', num_tokens=49)] * 4,
                      quadratic_memory_limit=0.5)
    rand.stem.register_forward_pre_hook(lambda *_: pytest.fail('the forward started'))
    with pytest.raises(InputTooLargeError, match='than the 0.5 GiB available'):
        rand.eval()(torch.zeros(1, 3, 512, 512))
    stage, name, tokens, need = rand.quadratic_memory(1, 512, 512)[0]
    assert (stage, name, tokens, need) == (0, 'RandomMixing', 128 * 128, 4 * (128 * 128) ** 2)


@pytest.mark.parametrize('family', ['ConvFormer', 'CAFormer', 'hybrid PoolFormer'])
def test_training_options(family):
    make = FAMILIES[family][0]
    model = make(out_indices=(1, 3), frozen_stages=2)
    assert list(model.out_norms) == ['1', '3'] and model.out_channels == [128, 512]
    model.train()
    frozen = [model.stem, model.stages[0], model.stages[1], model.out_norms['1']]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for m in frozen) and model.stages[2].training
    # with_cp: the same outputs and gradients, recomputed instead of stored.
    torch.manual_seed(0)
    plain = randomize_(make())
    cp = make(with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 96)
    grads = []
    for model in (plain, cp):
        model.train()
        sum(o.sum() for o in model(x)).backward()
        grads.append(model.stages[2].blocks[0].norm1.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_one_constructor_and_the_families_as_data():
    """Every family is MetaFormer's constructor with a spec and sizes, stated once."""
    from mmpoolformer.models import (
        CAFormer,
        ConvFormer,
        IdentityFormer,
        MetaFormer,
        PoolFormer,
        PoolFormerV2,
        RandFormer,
    )
    families = [PoolFormer, PoolFormerV2, IdentityFormer, RandFormer, ConvFormer, CAFormer]
    for cls in families:
        assert '__init__' not in vars(cls) and cls.family is not None and cls.arch_settings
    # The sizes are one table: PoolFormer's archs are the baselines' archs.
    for name, size in IdentityFormer.arch_settings.items():
        assert {k: PoolFormer.arch_settings[name][k] for k in size} == size
    # A family's defaults are overridable by name, and a wrong combination is refused.
    model = PoolFormer('s12', pool_size=5, out_indices=(3, ))
    assert all(b.token_mixer.pool_size == 5 for s in model.stages for b in s.blocks)
    with pytest.raises(ValueError, match='pool_size=5 applies to Pooling mixers, and this '
                                         'ConvFormer has none'):
        ConvFormer('s18', pool_size=5)
    with pytest.raises(TypeError, match='states no family'):
        MetaFormer()
