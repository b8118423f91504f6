"""The CPU backend's fast paths give the plain computation's numbers; the switch works."""
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from mmpoolformer.models import PoolFormer, kernels
from mmpoolformer.models.kernels import cpu as fused_ops
from mmpoolformer.models.kernels import portable
from mmpoolformer.models.layers import GroupNormNHWC
from mmpoolformer.testing import randomize_, relative_errors


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
    assert torch.autograd.gradcheck(lambda t, w, b: portable.group_norm1(t, w, b, 1e-5),
                                    (x, layer.weight, layer.bias))
    assert torch.autograd.gradcheck(lambda t: portable.group_norm1_rstd(t, 1e-5), (x, ))


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
        assert b.dtype == torch.float32  # an fp32 residual stream, as the official model's
        cos = F.cosine_similarity(a.flatten().double(), b.float().flatten().double(), dim=0)
        assert cos.item() >= 0.999


def test_bf16_autocast_training_step_is_finite():
    model = randomize_(PoolFormer('s12')).train()
    with torch.autocast('cpu', dtype=torch.bfloat16):
        outs = model(torch.randn(2, 3, 64, 64))
    sum(o.float().mean() for o in outs).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def plain_norm_mlp_residual(x, gn_w, gn_b, w1, b1, w2, b2, ls, rs):
    """The block's channel-MLP line as the official definition writes it."""
    n = F.group_norm(x.permute(0, 3, 1, 2), 1, gn_w, gn_b, 1e-5).permute(0, 2, 3, 1)
    branch = F.linear(F.gelu(F.linear(n, w1, b1)), w2, b2)
    return (x if rs is None else x * rs) + (branch if ls is None else branch * ls)


@pytest.mark.parametrize('layer_scale,res_scale,bias,chunk_bytes', [
    (True, False, True, 2**24), (True, False, True, 3000), (False, True, False, 2**24),
    (True, True, True, 3000), (False, False, True, 3000)])
@pytest.mark.parametrize('whole', [False, True], ids=['chunks', 'whole'])
def test_fused_norm_mlp_residual_matches_the_plain_expression(layer_scale, res_scale, bias,
                                                              chunk_bytes, whole, monkeypatch):
    if not fused_ops.mkldnn_linear_available():
        pytest.skip('this torch build has no oneDNN linear')
    monkeypatch.setattr(fused_ops, 'MLP_CHUNK_BYTES', chunk_bytes)
    monkeypatch.setattr(fused_ops, 'MLP_CHUNK_ABOVE', 0)  # chunk tensors of any size
    torch.manual_seed(0)
    c = 16
    # Several row chunks at 3000 bytes (4C x 4 bytes = 256 bytes per row, 198 rows).
    x = torch.randn(2, 9, 11, c) * 0.5 + 4.0
    params = [torch.rand(c) + 0.5, torch.randn(c) if bias else None,
              torch.randn(4 * c, c) * 0.3, torch.randn(4 * c) if bias else None,
              torch.randn(c, 4 * c) * 0.3, torch.randn(c) if bias else None,
              torch.rand(c) + 0.5 if layer_scale else None,
              torch.rand(c) + 0.5 if res_scale else None]
    inputs = [x] + params
    leaves = [t.clone().requires_grad_() if t is not None else None for t in inputs]
    out = fused_ops._norm_mlp_residual_op(*leaves, 1e-5, torch.float32, True, whole)[0]
    ref_leaves = [t.double().requires_grad_() if t is not None else None for t in inputs]
    ref = plain_norm_mlp_residual(*ref_leaves)
    assert ((out.double() - ref).abs().max() / ref.abs().max()).item() < 1e-5
    g = torch.randn_like(out)
    out.backward(g)
    ref.backward(g.double())
    for got, want in zip(leaves, ref_leaves):
        if got is None:
            continue
        err = (got.grad.double() - want.grad).abs().max() / want.grad.abs().max()
        assert err.item() < 1e-5


def test_fused_norm_mlp_residual_computes_only_the_gradients_asked_for():
    if not fused_ops.mkldnn_linear_available():
        pytest.skip('this torch build has no oneDNN linear')
    c = 8
    x = torch.randn(1, 4, 5, c, requires_grad=True)
    w1, w2 = torch.randn(4 * c, c), torch.randn(c, 4 * c)
    ls = torch.ones(c, requires_grad=True)
    out = fused_ops._norm_mlp_residual_op(x, torch.ones(c), torch.zeros(c), w1, None, w2,
                                          None, ls, None, 1e-5, torch.float32, True, False)[0]
    gx, gls = torch.autograd.grad(out.sum(), (x, ls))
    assert gx.shape == x.shape and gls.shape == ls.shape


def test_poolformer_training_takes_the_fused_paths_by_default(monkeypatch):
    """The fast paths need no flag: a plain PoolFormer in train mode uses both."""
    if not fused_ops.mkldnn_linear_available():
        pytest.skip('this torch build has no oneDNN linear')
    calls = []
    for module, name in ((fused_ops, 'norm_mlp_residual'), (portable, 'pool_token_mixing')):
        fn = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _fn=fn, _name=name, **kw:
                            calls.append(_name) or _fn(*a, **kw))
    model = PoolFormer('s12').train()
    outs = model(torch.randn(1, 3, 64, 64))
    sum(o.sum() for o in outs).backward()
    assert calls.count('norm_mlp_residual') == 12 and calls.count('pool_token_mixing') == 12
    # The switch turns every fast path off: the same model then takes none of them.
    calls.clear()
    with kernels.fast_paths(False):
        sum(o.sum() for o in model(torch.randn(1, 3, 64, 64))).backward()
    assert calls == []


@pytest.mark.parametrize('value,expected', [('0', False), ('off', False), ('1', True),
                                            ('', True)])
def test_the_environment_variable_switches_the_fast_paths(value, expected, monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, value)
    assert kernels.fast_paths_enabled() is expected
    with kernels.fast_paths(not expected):
        assert kernels.fast_paths_enabled() is (not expected)
    assert kernels.fast_paths_enabled() is expected


def test_a_bad_switch_value_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(kernels.ENV_VAR, 'maybe')
    with pytest.raises(ValueError, match='use 1 .* or 0'):
        kernels.fast_paths_enabled()
    with pytest.raises(TypeError, match='True or False'):
        with kernels.fast_paths('no'):
            pass


def test_tracing_takes_the_plain_ops(monkeypatch):
    """torch.jit tracing (get_flops, the ONNX exporter) sees only plain aten ops."""
    model = randomize_(PoolFormer('s12', out_indices=(3, ))).eval()
    traced = torch.jit.trace(model, torch.randn(1, 3, 64, 64), check_trace=False)
    kinds = {node.kind() for node in traced.inlined_graph.nodes()}
    assert 'prim::PythonOp' not in kinds and not any('mkldnn' in k for k in kinds)
    assert 'aten::avg_pool2d' in kinds and 'aten::group_norm' in kinds
    x = torch.randn(1, 3, 96, 80)
    with torch.no_grad():
        torch.testing.assert_close(traced(x), model(x), rtol=1e-5, atol=1e-5)


def test_with_cp_recomputes_on_the_path_of_its_forward():
    """A checkpointed forward run with the fast paths off and its backward run with them
    on (or the reverse) still recomputes exactly what the forward saved."""
    torch.manual_seed(0)
    plain = randomize_(PoolFormer('s12'))
    cp = PoolFormer('s12', with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 64, 64)
    sum(o.sum() for o in plain.train()(x)).backward()
    for fast in (False, True):
        cp.zero_grad()
        with kernels.fast_paths(fast):
            outs = cp.train()(x)
        with kernels.fast_paths(not fast):
            sum(o.sum() for o in outs).backward()
        got = {k: p.grad for k, p in cp.named_parameters()}
        want = {k: p.grad for k, p in plain.named_parameters()}
        # floor: norm1.bias's true gradient is exactly 0 (it cancels in pool(n) - n)
        assert max(relative_errors(got, want, floor=1e-3).values()) < 1e-4


@pytest.mark.parametrize('rows,row_bytes,limit', [(32768, 1024, 2**22), (2048, 5120, 2**22),
                                                  (7, 100, 250), (5, 10**9, 2**22),
                                                  (1, 4, 2**22), (10**6, 1024, 2**22)])
def test_row_chunks_cover_every_row_once_under_the_limit(rows, row_bytes, limit,
                                                         monkeypatch):
    monkeypatch.setattr(fused_ops, 'MLP_CHUNK_ABOVE', 0)
    monkeypatch.setattr(fused_ops, 'MLP_CHUNK_BYTES', limit)
    chunks = fused_ops.row_chunks(rows, row_bytes)
    covered = [i for c in chunks for i in range(rows)[c]]
    assert covered == list(range(rows))
    sizes = [c.stop - c.start for c in chunks]
    assert len(chunks) <= fused_ops.MLP_CHUNKS
    # Under the limit, unless that takes more than MLP_CHUNKS chunks: then even ones.
    most = max(1, limit // row_bytes)
    if rows <= most * fused_ops.MLP_CHUNKS:
        assert max(sizes) <= most
    else:
        assert max(sizes) == -(-rows // fused_ops.MLP_CHUNKS)


def test_row_chunks_split_only_large_tensors():
    # S12 stage 1 at batch 2, 512x512 (32 MiB hidden) is split into 4 MiB chunks; stage 3
    # (10 MiB) runs whole.
    assert len(fused_ops.row_chunks(32768, 256 * 4)) == 8
    assert fused_ops.row_chunks(2048, 1280 * 4) == [slice(0, 2048)]
