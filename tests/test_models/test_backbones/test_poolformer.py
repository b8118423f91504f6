import copy

import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from mmpoolformer.checkpoint import convert_state_dict
from mmpoolformer.models import PoolFormer
from mmpoolformer.testing import official_from_arch, paired, randomize_

ARCHS = list(PoolFormer.arch_settings)


def conv_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def expected_sizes(h, w):
    h, w = conv_size(h, 7, 4, 2), conv_size(w, 7, 4, 2)
    sizes = [(h, w)]
    for _ in range(3):
        h, w = conv_size(h, 3, 2, 1), conv_size(w, 3, 2, 1)
        sizes.append((h, w))
    return sizes


def paired_models(arch='s12', out_indices=(0, 1, 2, 3), seed=0):
    """The oracle with random weights and our backbone holding the same weights."""
    ours, ref = paired('PoolFormer', seed=seed, arch=arch, out_indices=out_indices)
    return ref, ours


@pytest.mark.parametrize('arch', ARCHS)
def test_output_shapes_and_channels(arch):
    model = PoolFormer(arch).eval()
    dims = PoolFormer.arch_settings[arch]['embed_dims']
    assert model.out_channels == dims
    for h, w in [(64, 64), (389, 513)] if arch == 's12' else [(97, 61)]:
        with torch.no_grad():
            outs = model(torch.randn(1, 3, h, w))
        assert len(outs) == 4
        for out, c, (oh, ow) in zip(outs, dims, expected_sizes(h, w)):
            assert out.shape == (1, c, oh, ow)


@pytest.mark.parametrize('h,w', [(3, 3), (5, 130), (33, 31), (32, 32)])
def test_odd_and_tiny_sizes(h, w):
    model = PoolFormer('s12', out_indices=(0, 3)).eval()
    with torch.no_grad():
        outs = model(torch.randn(2, 3, h, w))
    sizes = expected_sizes(h, w)
    assert [o.shape[-2:] for o in outs] == [sizes[0], sizes[3]]


def test_too_small_input_is_a_clear_error():
    with pytest.raises(ValueError, match='too small.*at least 3'):
        PoolFormer('s12')(torch.randn(1, 3, 2, 40))


@pytest.mark.parametrize('arch', ARCHS)
def test_parameter_count_matches_paper_and_oracle(arch):
    settings = PoolFormer.arch_settings[arch]
    ours = PoolFormer(arch)
    n_ours = sum(p.numel() for p in ours.parameters())
    n_ref = sum(p.numel() for p in official_from_arch(settings).parameters())
    assert n_ours == n_ref
    # The paper's (classification) count = backbone - output norms + final norm + head.
    out_norms = sum(2 * c for c in settings['embed_dims'])
    last = settings['embed_dims'][-1]
    cls = n_ours - out_norms + 2 * last + last * 1000 + 1000
    paper = {'s12': 11.9, 's24': 21.4, 's36': 30.9, 'm36': 56.2, 'm48': 73.5}[arch]
    assert abs(cls / 1e6 - paper) < 0.05


def test_only_requested_output_norms_exist():
    model = PoolFormer('s12', out_indices=(1, 2, 3))
    assert sorted(model.out_norms.keys()) == ['1', '2', '3']
    outs = model(torch.randn(1, 3, 64, 64))
    assert [o.shape[1] for o in outs] == [128, 320, 512]
    sum(o.sum() for o in outs).backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert no_grad == []


@pytest.mark.parametrize('arch,size', [('s12', (389, 513)), ('s24', (64, 96)), ('m36', (65, 47))])
@pytest.mark.parametrize('mode', ['eval', 'train'])
def test_parity_with_official_definition(arch, size, mode):
    ref, ours = paired_models(arch)
    ref.train(mode == 'train')
    ours.train(mode == 'train')
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = ref(x), ours(x)
    for e, g in zip(expected, got):
        assert e.shape == g.shape
        assert (e - g).abs().max().item() <= 1e-5
    # A wrong definition (e.g. dropping the "- x" of the mixer) must be caught.
    assert max(e.abs().max().item() for e in expected) > 0.1


def test_gradient_parity_with_official_definition():
    ref, ours = paired_models('s12', seed=1)
    x = torch.randn(2, 3, 96, 80)
    weights = [torch.randn(o.shape) for o in ref(x)]
    for model in (ref, ours):
        loss = sum((o * w).sum() for o, w in zip(model(x), weights))
        loss.backward()
    grads, _, _, _ = convert_state_dict(
        {k: p.grad for k, p in ref.named_parameters()}, with_out_norms=True)
    for name, p in ours.named_parameters():
        scale = grads[name].abs().max().item()
        assert (p.grad - grads[name]).abs().max().item() <= 1e-4 * max(scale, 1.0), name


def test_with_cp_gives_same_outputs_and_gradients():
    _, plain = paired_models('s12', seed=2)
    ckpt = PoolFormer('s12', with_cp=True)
    ckpt.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    results = []
    for model in (plain, ckpt):
        model.train()
        outs = model(x)
        sum((o ** 2).mean() for o in outs).backward()
        results.append(([o.detach() for o in outs],
                        {n: p.grad.clone() for n, p in model.named_parameters()}))
    for a, b in zip(results[0][0], results[1][0]):
        torch.testing.assert_close(a, b)
    for name, grad in results[0][1].items():
        torch.testing.assert_close(grad, results[1][1][name], msg=name)


def test_drop_path_is_stochastic_in_train_and_off_in_eval():
    model = PoolFormer('s12', drop_path_rate=0.5)
    randomize_(model)
    x = torch.randn(4, 3, 64, 64)
    model.train()
    a, b = model(x)[-1], model(x)[-1]
    assert not torch.allclose(a, b)
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x)[-1], model(x)[-1])
    rates = [blk.drop_path.drop_prob for st in model.stages for blk in st.blocks]
    assert rates[0] == 0 and rates[-1] == pytest.approx(0.5)
    assert rates == sorted(rates)


@pytest.mark.parametrize('frozen', [-1, 0, 1, 2, 4])
def test_frozen_stages(frozen):
    model = PoolFormer('s12', frozen_stages=frozen)
    model.train()
    outs = model(torch.randn(1, 3, 64, 64))
    if frozen == 4:  # everything frozen: nothing to differentiate
        assert not any(o.requires_grad for o in outs)
    else:
        sum(o.sum() for o in outs).backward()
    frozen_prefixes = ([] if frozen < 0 else ['stem.']) + \
        [f'stages.{i}.' for i in range(max(frozen, 0))] + \
        [f'out_norms.{i}.' for i in range(max(frozen, 0))]
    for name, p in model.named_parameters():
        is_frozen = name.startswith(tuple(frozen_prefixes)) if frozen_prefixes else False
        assert p.requires_grad is not is_frozen, name
        assert (p.grad is None) is is_frozen, name
    for name, m in model.named_modules():
        if name.startswith(tuple(p.rstrip('.') for p in frozen_prefixes)) and frozen_prefixes:
            assert not m.training, name
    # Re-entering train mode keeps frozen parts in eval.
    model.train()
    assert model.stem.training is (frozen < 0)


def test_frozen_stage_weights_do_not_change_in_an_optimizer_step():
    model = PoolFormer('s12', frozen_stages=1)
    before = copy.deepcopy(model.state_dict())
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    sum(o.mean() for o in model(torch.randn(2, 3, 64, 64))).backward()
    opt.step()
    after = model.state_dict()
    assert torch.equal(before['stages.0.blocks.0.mlp.fc1.weight'],
                       after['stages.0.blocks.0.mlp.fc1.weight'])
    assert not torch.equal(before['stages.1.blocks.0.mlp.fc1.weight'],
                           after['stages.1.blocks.0.mlp.fc1.weight'])


def test_norm_eval_keeps_batchnorm_statistics():
    model = PoolFormer('s12', norm_cfg=dict(type='BN'), norm_eval=True)
    model.train()
    bns = [m for m in model.modules() if isinstance(m, _BatchNorm)]
    assert bns and all(not m.training for m in bns)
    before = bns[0].running_mean.clone()
    model(torch.randn(2, 3, 64, 64))
    assert torch.equal(before, bns[0].running_mean)
    model = PoolFormer('s12', norm_cfg=dict(type='BN'), norm_eval=False).train()
    model(torch.randn(2, 3, 64, 64))
    bn = next(m for m in model.modules() if isinstance(m, _BatchNorm))
    assert not torch.equal(before, bn.running_mean)


def test_training_step_reduces_loss():
    model = PoolFormer('s12', out_indices=(3,))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randn(2, 3, 64, 64)
    target = torch.randn(2, 512, 2, 2)
    losses = []
    for _ in range(5):
        loss = ((model(x)[0] - target) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_input_is_not_modified_and_caller_lists_are_not_mutated():
    out_indices = [3, 1]
    arch = dict(PoolFormer.arch_settings['s12'])
    model = PoolFormer(arch, out_indices=out_indices)
    assert out_indices == [3, 1] and model.out_indices == (1, 3)
    x = torch.randn(1, 3, 32, 32)
    x0 = x.clone()
    model(x)
    assert torch.equal(x, x0)


@pytest.mark.parametrize('kwargs,match', [
    (dict(arch='s13'), r"unknown PoolFormer arch 's13'; valid archs: s12, s24, s36, m36, m48"),
    (dict(arch=dict(layers=[1, 1, 1, 1])), 'needs exactly the keys'),
    (dict(out_indices=(0, 4)), r'out_indices counts stages: each must be an int in 0\.\.3'),
    (dict(out_indices=(0, 6)), r'0\.\.3'),
    (dict(frozen_stages=5), r'frozen_stages must be an int from -1 .* to 4'),
    (dict(frozen_stages=-2), 'frozen_stages'),
    (dict(pool_size=4), 'pool_size must be an odd positive int'),
    (dict(norm_cfg=dict(type='XN')),
     "unknown norm type 'XN'.*valid norm types: BN, GN, LN, SyncBN"),
    (dict(drop_path_rate=1.0), 'drop_path_rate'),
])
def test_invalid_arguments(kwargs, match):
    with pytest.raises((ValueError, KeyError, TypeError), match=match):
        PoolFormer(**kwargs)


def test_negative_out_indices_count_from_the_end():
    assert PoolFormer('s12', out_indices=(-1, -2)).out_indices == (2, 3)
