"""Each fast path of the block gives the plain computation's numbers."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpoolformer.models import PoolFormer
from mmpoolformer.models.layers import GroupNormNHWC, fused_ops
from mmpoolformer.testing import randomize_


def reference_group_norm(x_nhwc, layer):
    ref = nn.GroupNorm(layer.num_groups, layer.num_channels, eps=layer.eps).double()
    ref.load_state_dict(layer.state_dict())
    return ref(x_nhwc.double().permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


@pytest.mark.parametrize('groups', [1, 4])
def test_group_norm_nhwc_matches_nn_group_norm_even_with_a_large_mean(groups):
    layer = GroupNormNHWC(groups, 64)
    nn.init.uniform_(layer.weight, 0.5, 1.5)
    nn.init.uniform_(layer.bias, -1, 1)
    # Deep in a residual stream the per-sample mean can be many stds: the channels-last
    # kernel's E[x^2] - E[x]^2 loses ~1e-4 there; one group must stay exact.
    x = torch.randn(2, 33, 17, 64) * 0.5 + 8.0
    err = (layer(x).double() - reference_group_norm(x, layer)).abs().max().item()
    assert err < (1e-5 if groups == 1 else 1e-3)


def test_group_norm_nhwc_gradients():
    layer = GroupNormNHWC(1, 16).double()
    nn.init.uniform_(layer.weight, 0.5, 1.5)
    x = (torch.randn(2, 5, 7, 16, dtype=torch.float64) + 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t, w, b: fused_ops.group_norm1_nhwc(t, w, b, 1e-5),
                                    (x, layer.weight, layer.bias))
    assert torch.autograd.gradcheck(lambda t: fused_ops.group_norm1_rstd(t, 1e-5), (x, ))


def test_mkldnn_linear_forward_and_backward_match_f_linear():
    if not fused_ops.mkldnn_linear_available():
        pytest.skip('this torch build has no oneDNN linear')
    layer = nn.Linear(64, 256)
    x = torch.randn(3, 9, 11, 64, requires_grad=True)
    x2 = x.detach().clone().requires_grad_()
    out = fused_ops.fast_linear(x, layer)
    ref_layer = nn.Linear(64, 256)
    ref_layer.load_state_dict(layer.state_dict())
    ref = ref_layer(x2)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g)
    torch.testing.assert_close(x.grad, x2.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(layer.weight.grad, ref_layer.weight.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(layer.bias.grad, ref_layer.bias.grad, rtol=1e-4, atol=1e-4)


def test_inference_path_equals_training_path_in_eval_mode():
    """Eval + no_grad takes the fused oneDNN MLP; eval with grad takes the plain one."""
    model = randomize_(PoolFormer('s12')).eval()
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        fused = model(x)
    plain = model(x)  # grad enabled: no oneDNN inference kernels
    for a, b in zip(fused, plain):
        assert (a - b.detach()).abs().max().item() <= 1e-5


def test_bf16_autocast_features_match_fp32():
    model = randomize_(PoolFormer('s12')).eval()
    x = torch.randn(2, 3, 128, 160)
    with torch.no_grad():
        ref = model(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            low = model(x)
    for a, b in zip(ref, low):
        assert b.dtype == torch.bfloat16
        cos = F.cosine_similarity(a.flatten().double(), b.float().flatten().double(), dim=0)
        assert cos.item() >= 0.999


def test_bf16_autocast_training_step_is_finite():
    model = randomize_(PoolFormer('s12')).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
    sum(o.float().mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
