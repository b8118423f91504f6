"""The device-parametrized parity suite: every family against the official definition.

The same command runs it on the CPU (CI) and on a CUDA machine (``tools/device_check.sh``,
or ``pytest tests/test_models/test_parity.py --device cuda``). Truth is the official
definition in float64 on the same device. Ours must match it in float64 to 1e-9 (the same
function and the same gradient formulas, up to rounding) and in fp32 to 1e-4 of each
gradient's scale: forward, input gradient and every parameter's gradient, in train mode,
at an odd input size; with the fast paths on and off (the switch), on a channels_last
input, with activation checkpointing and with frozen stages.
"""
import copy
import functools

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpoolformer import compat
from mmpoolformer.models import kernels
from mmpoolformer.models.backbones.metaformer import Downsampling
from mmpoolformer.models.layers import BatchNormNHWC, GroupNormNHWC
from mmpoolformer.testing import FAMILIES, INPUT_SIZES, gradients, paired, relative_errors

# Used with indirect=True: tests/conftest.py's ``device`` fixture skips a CUDA case where
# there is no CUDA device, or a case that --device did not select.
DEVICES = ['cpu', 'cuda']
VARIANTS = {'plain': dict(), 'channels_last': dict(), 'with_cp': dict(with_cp=True),
            'frozen_stages': dict(frozen_stages=2), 'cuda_layouts': dict()}


def _cases():
    for family in FAMILIES:
        for variant in VARIANTS:
            for fast in (True, False):
                if not fast and variant in ('with_cp', 'frozen_stages', 'cuda_layouts'):
                    continue  # the plain ops have no path of their own for these
                yield pytest.param(family, variant, fast,
                                   id=f'{family}-{variant}-{"fast" if fast else "reference"}')


@functools.lru_cache(maxsize=None)
def _truth(family: str, device: str):
    """The official float64 model's outputs and gradients (cached per family and device)."""
    _, ref = paired(family)
    ref = ref.double().to(device).train()
    h, w = INPUT_SIZES[family]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        outs = ref(x.to(device))
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device)
               for o in outs]
    return x, weights, [o.cpu() for o in outs], gradients(ref, x.to(device), weights)


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('family,variant,fast', list(_cases()))
def test_forward_and_every_gradient_match_the_official_definition(device, family, variant,
                                                                  fast, monkeypatch):
    if variant == 'cuda_layouts':
        # The CPU runs exactly what CUDA runs: the native kernels get the layouts CUDA
        # gets (channels-last views only for convolutions), the rest is portable.
        if device.type != 'cpu':
            pytest.skip('cuda_layouts is the CPU running CUDA\'s choices; on CUDA: plain')
        monkeypatch.setitem(kernels._CHANNELS_LAST_VERIFIED, 'cpu',
                            kernels.cuda.CHANNELS_LAST_VERIFIED)
    x, weights, want_outs, truth = _truth(family, device.type)
    ours, _ = paired(family, **VARIANTS[variant])
    ours = ours.to(device).train()
    if variant == 'channels_last':
        x = x.contiguous(memory_format=torch.channels_last)
    frozen = {k for k, p in ours.named_parameters() if not p.requires_grad}
    with kernels.fast_paths(fast):
        # floor: gradients whose truth is exactly 0 (PoolFormer's norm1.bias cancels in
        # pool(n) - n) are held to tol x floor x the largest gradient instead.
        for dtype, tol, floor in ((torch.float64, 1e-9, 1e-6), (torch.float32, 1e-4, 1e-3)):
            model = copy.deepcopy(ours).to(dtype)
            xd = x.to(device, dtype)
            if variant == 'channels_last':
                xd = xd.contiguous(memory_format=torch.channels_last)
            with torch.no_grad():
                outs = model(xd)
            for got, want in zip(outs, want_outs):
                err = ((got.double().cpu() - want).abs().max() / want.abs().max()).item()
                assert err < tol, (dtype, 'forward', err)
            grads = gradients(model, xd, [w.to(dtype) for w in weights])
            expected = {k: v for k, v in truth.items() if k not in frozen}
            assert set(grads) == set(expected)
            for key, err in relative_errors(grads, expected, floor).items():
                # Scalar gradients (StarReLU's scale and bias) sum millions of terms that
                # cancel: even the official fp32 code is ~1e-3 off there.
                if dtype == torch.float32 and expected[key].numel() == 1:
                    continue
                assert err < tol, (dtype, key, err)


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('low', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('family', FAMILIES)
def test_autocast_follows_fp32(device, low, family):
    if not compat.autocast_supports(device.type, low):
        pytest.skip(f'torch {torch.__version__} has no {low} autocast on {device.type}')
    ours, _ = paired(family)
    ours = ours.to(device).train()
    h, w = INPUT_SIZES[family]
    x = torch.randn(2, 3, h, w, device=device)
    with torch.no_grad():
        weights = [torch.randn_like(o) for o in ours(x)]
    full = gradients(ours, x, weights)
    low_grads = gradients(ours, x, weights,
                          under=lambda: torch.autocast(device.type, dtype=low))
    with torch.no_grad():
        ref_outs = ours(x)
        with torch.autocast(device.type, dtype=low):
            low_outs = ours(x)
    for a, b in zip(ref_outs, low_outs):
        assert torch.isfinite(b).all()
        assert F.cosine_similarity(a.flatten().double(), b.flatten().double(), 0) >= 0.999
    assert all(torch.isfinite(g).all() for g in low_grads.values())
    assert F.cosine_similarity(full['input'].flatten().double(),
                               low_grads['input'].flatten().double(), 0) >= 0.99
    params = [k for k in full if k != 'input']
    flat = [torch.cat([g[k].flatten().double() for k in params]) for g in (full, low_grads)]
    assert F.cosine_similarity(*flat, 0) >= 0.99


def _rms_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return ((got.double().cpu() - want).norm() / want.norm()).item()


def _autocast_errors(model, x, weights, truth, low):
    """Relative RMS errors of ``model`` under ``low`` autocast against the float64 truth:
    (forward in eval and train mode, input gradient, median over the parameter gradients),
    and the outputs' dtypes. (RMS, not the maximum: one element's rounding is noise at this
    precision.)"""
    want_outs, want_grads = truth
    forward = 0.0
    for training in (False, True):  # (eval mode without autograd: the inference paths)
        with torch.no_grad(), torch.autocast(x.device.type, dtype=low):
            outs = model.train(training)(x)
        forward = max([forward] + [_rms_error(o, w) for o, w in zip(outs, want_outs)])
    grads = gradients(model, x, weights,
                      under=lambda: torch.autocast(x.device.type, dtype=low))
    # (gradients that are exactly 0 in truth, PoolFormer's norm1.bias, have no relative
    # error to take)
    params = sorted(_rms_error(grads[k], w) for k, w in want_grads.items()
                    if k != 'input' and w.norm() > 0)
    return ((forward, _rms_error(grads['input'], want_grads['input']),
             params[len(params) // 2]), [o.dtype for o in outs])


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
@pytest.mark.parametrize('family', FAMILIES)
def test_autocast_is_as_accurate_as_the_official_definition_under_autocast(device, fast,
                                                                          family):
    """Under bf16 autocast ours keeps dtypes at least as wide as the official model's (a
    bf16 convolution output meets fp32 norm weights and layer/res scales: the residual
    stream is fp32) and
    is as close to the float64 truth as the official model under autocast: forward, input
    gradient and the median parameter gradient within 1.25x of its errors. A bf16 residual
    stream measured 1.3x to 1.9x here, and rounds away layer scale's small updates."""
    ours, ref = paired(family)
    ours, ref = ours.to(device).train(), ref.to(device).train()
    h, w = INPUT_SIZES[family]
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(2, 3, h, w, generator=gen).to(device)
    with torch.no_grad():
        weights = [torch.randn(o.shape, generator=gen).to(device) for o in ref(x)]
    exact = copy.deepcopy(ref).double()
    with torch.no_grad():
        truth_outs = [o.cpu() for o in exact(x.double())]
    truth = truth_outs, gradients(exact, x.double(), [w.double() for w in weights])
    official, official_dtypes = _autocast_errors(ref, x, weights, truth, torch.bfloat16)
    with kernels.fast_paths(fast):
        got, dtypes = _autocast_errors(ours, x, weights, truth, torch.bfloat16)
    # (our output norms give fp32 where the official nn.LayerNorm returns its bf16 input's
    # dtype: at least as wide)
    assert all(torch.promote_types(a, b) == a for a, b in zip(dtypes, official_dtypes))
    for what, a, b in zip(('forward', 'input gradient', 'median parameter gradient'), got,
                          official):
        assert a <= 1.25 * b, (what, a, b)


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
@pytest.mark.parametrize('family', ['PoolFormer', 'hybrid PoolFormer'])
@pytest.mark.parametrize('stream', [torch.float32, torch.bfloat16], ids=['fp32-x', 'bf16-x'])
def test_layer_scaled_updates_survive_autocast(device, fast, family, stream):
    """A block at its initial layer scale (1e-5) adds an update 1e-5 the size of x: under
    bf16 autocast it must come out as in fp32, from an fp32 stream or from a bf16 x (a
    convolution's output). In a bf16 result it would round away entirely."""
    ours, _ = paired(family)
    block = ours.stages[1].blocks[0]
    for scale in (block.layer_scale1.scale, block.layer_scale2.scale):
        scale.data.fill_(1e-5)
    block = block.to(device).train()
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 9, 11, block.mlp.fc1.in_features, generator=gen).to(device)
    x = x.to(stream).float()  # the values a bf16 x holds
    with kernels.fast_paths(fast):
        want = block(x) - x
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = block(x.to(stream))
    assert out.dtype == torch.float32
    err = ((out - x - want).abs().max() / want.abs().max()).item()
    assert err < 0.05, err


def _convolves_in(device, dtype) -> bool:
    """Whether torch has a convolution kernel for ``dtype`` tensors on ``device`` (float16 on
    the CPU: not in torch 2.1)."""
    try:
        F.conv2d(torch.ones(1, 1, 3, 3, device=device, dtype=dtype),
                 torch.ones(1, 1, 3, 3, device=device, dtype=dtype))
        return True
    except RuntimeError:
        return False


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('low', [torch.bfloat16, torch.float16], ids=['bf16', 'fp16'])
@pytest.mark.parametrize('autocast', [True, False], ids=['autocast', 'low-tensors'])
def test_low_precision_downsampling_at_widths_and_heights_1_to_3(device, low, autocast):
    """Stage downsampling (3x3, stride 2) and the stem (7x7, stride 4) at tiny sizes."""
    if autocast and not compat.autocast_supports(device.type, low):
        pytest.skip(f'torch {torch.__version__} has no {low} autocast on {device.type}')
    if not autocast and not _convolves_in(device, low):
        pytest.skip(f'torch {torch.__version__} has no {low} convolution on {device.type}')
    torch.manual_seed(0)
    # Input sizes whose outputs have a side of 1 to 3 (the stem needs 3 pixels or more).
    down_sizes = [(69, 1), (69, 2), (69, 3), (1, 69), (2, 69), (3, 69), (1, 1), (3, 3)]
    stem_sizes = [(69, 3), (69, 7), (69, 11), (3, 69), (7, 69), (11, 69), (3, 3)]
    for conv, sizes in ((Downsampling(384, 768, 3, 2, 1), down_sizes),
                        (Downsampling(3, 64, 7, 4, 2), stem_sizes)):
        conv = conv.to(device)
        cin = conv.conv.in_channels
        for h, w in sizes:
            x = torch.randn(2, h, w, cin, device=device).to(low)
            with torch.no_grad():
                want = conv.float()(x.float())
                if autocast:
                    with torch.autocast(device.type, dtype=low):
                        got = conv(x.float() if low == torch.bfloat16 else x)
                else:
                    got = copy.deepcopy(conv).to(low)(x)
            assert got.dtype == low and torch.isfinite(got).all(), (h, w)
            err = ((got.float() - want).abs().max() / want.abs().max()).item()
            assert err < 0.02, ((h, w), err)


def test_unit_side_conv_outputs_are_computed_in_fp32_on_the_cpu():
    """The AMX bf16 workaround is in effect on every CPU: a width-1 output is the fp32
    convolution rounded once (bit for bit), not the native bf16 kernel's result."""
    torch.manual_seed(0)
    conv = Downsampling(384, 768, 3, 2, 1)
    x = torch.randn(2, 69, 1, 384).to(torch.bfloat16)
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        got = conv(x)
        native = conv.conv(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1)
    with torch.no_grad():
        want = conv.float()(x.float()).to(torch.bfloat16)
    assert torch.equal(got, want)
    assert native.dtype == torch.bfloat16  # the kernel the workaround avoids


def _layer_cases():
    def gn4():
        layer = GroupNormNHWC(4, 32)
        return layer, nn.GroupNorm(4, 32)

    def gn1():
        return GroupNormNHWC(1, 32), nn.GroupNorm(1, 32)

    def bn():
        return BatchNormNHWC(32), nn.BatchNorm2d(32)

    return {'GroupNorm(4 groups)': gn4, 'GroupNorm(1 group)': gn1, 'BatchNorm': bn}


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('fast', [True, False], ids=['fast', 'reference'])
@pytest.mark.parametrize('name', list(_layer_cases()))
def test_norm_layers_on_nhwc_match_torch_on_nchw(device, fast, name):
    ours, ref = _layer_cases()[name]()
    with torch.no_grad():
        for p in ours.parameters():
            p.uniform_(0.5, 1.5)
    ref.load_state_dict(ours.state_dict())
    ours, ref = ours.double().to(device).train(), ref.double().to(device).train()
    # A large mean, as deep in a residual stream.
    x = torch.randn(2, 9, 13, 32, dtype=torch.float64, device=device) * 0.5 + 8.0
    g = torch.randn_like(x)
    with kernels.fast_paths(fast):
        xa = x.clone().requires_grad_()
        out = ours(xa)
        out.backward(g)
    xb = x.clone().requires_grad_()
    want = ref(xb.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    want.backward(g)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-9)
    for (n, p), q in zip(ours.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=n)


@pytest.mark.parametrize('device', DEVICES, indirect=True)
@pytest.mark.parametrize('pool_size', [3, 5])
def test_pooling_and_one_group_norm_pass_gradcheck(device, pool_size):
    from mmpoolformer.models.kernels import portable
    x = torch.randn(2, 6, 7, 3, dtype=torch.float64, device=device).requires_grad_()
    w = (torch.rand(3, dtype=torch.float64, device=device) + 0.5).requires_grad_()
    b = torch.randn(3, dtype=torch.float64, device=device).requires_grad_()
    x5 = (x.detach() * 0.5 + 5).requires_grad_()
    # channels_last=True only where the device's backend lists the kernel (the CPU).
    layouts = (True, False) if device.type == 'cpu' else (False, )
    for channels_last in layouts:
        assert torch.autograd.gradcheck(
            lambda t, cl=channels_last: portable.avg_pool(t, pool_size, cl), (x, ))
        assert torch.autograd.gradcheck(
            lambda t, w, b, cl=channels_last: portable.group_norm1(t, w, b, 1e-5, cl),
            (x5, w, b))
    assert torch.autograd.gradcheck(lambda t: portable.group_norm1_rstd(t, 1e-5), (x5, ))
    # The pooling's backward (a forward pool of grad / count) against the plain autograd
    # of F.avg_pool2d on contiguous NCHW memory, the layout that is right everywhere.
    g = torch.randn_like(x)
    (dx, ) = torch.autograd.grad(portable.avg_pool(x, pool_size, True), x, g)
    xn = x.detach().permute(0, 3, 1, 2).contiguous().requires_grad_()
    ref = F.avg_pool2d(xn, pool_size, 1, pool_size // 2, count_include_pad=False)
    ref.backward(g.permute(0, 3, 1, 2).contiguous())
    torch.testing.assert_close(dx, xn.grad.permute(0, 2, 3, 1), rtol=1e-12, atol=1e-12)
