"""The CPU backend: oneDNN GEMMs and the fused channel MLP, with their conditions of use.

- oneDNN's linear is faster than MKL's ``addmm`` at PoolFormer's small channel counts
  (K = 64, 128), and fuses exact GELU or a residual add into the GEMM (``linear_gelu`` /
  ``linear_add``). These ops have no autograd formula: they serve inference directly and
  training inside autograd functions written here.
- The channel MLP line ``res_scale * x + ls * fc2(gelu(fc1(gn1(x))))`` is one autograd
  function in training (``norm_mlp_residual``) and a chain of fused oneDNN calls in
  inference (``mlp_inference``). Its one-group norm is the portable one (``portable.py``).
Figures behind these choices are in ``docs/performance.md``.
"""
import functools

import torch

from .portable import group_norm1_backward, group_norm1_forward

# Native kernels that get channels-last views of the (B, H, W, C) features on the CPU:
# proved forward and backward by the CPU parity suite, which CI runs on every change.
# (avg_pool2d with count_include_pad=False is much faster on them than on NCHW memory.)
CHANNELS_LAST_VERIFIED = frozenset({'conv2d', 'avg_pool2d', 'group_norm', 'batch_norm'})


@functools.lru_cache(None)
def mkldnn_linear_available() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and \
            hasattr(torch.ops.mkldnn, '_linear_pointwise')
    except (AttributeError, RuntimeError):
        return False


def can_use_mkldnn_linear(x: torch.Tensor) -> bool:
    return (x.device.type == 'cpu' and x.dtype in (torch.float32, torch.bfloat16)
            and not torch.is_grad_enabled() and mkldnn_linear_available())


def linear_gelu(x2d, weight, bias):
    """gelu(x2d @ weight.T + bias), exact (erf) GELU, in one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise(x2d, weight, bias, 'gelu', [], 'none')


def linear(x2d, weight, bias):
    return torch.ops.mkldnn._linear_pointwise(x2d, weight, bias, 'none', [], '')


def linear_add(x2d, other2d, weight, bias):
    """other2d + x2d @ weight.T + bias, in one oneDNN call."""
    return torch.ops.mkldnn._linear_pointwise.binary(x2d, other2d, weight, bias, 'add')


class _MkldnnLinear(torch.autograd.Function):
    """``F.linear`` on 2-D fp32 CPU tensors with oneDNN GEMMs where MKL is slow.

    At PoolFormer's small channel counts (K = 64, 128) oneDNN's GEMM is faster than the
    ``addmm`` behind ``F.linear``; the input gradient is such a GEMM too. The weight
    gradient (K = number of tokens) stays a plain ``mm``.
    """

    @staticmethod
    def forward(ctx, x2d, weight, bias):
        ctx.save_for_backward(x2d, weight)
        ctx.has_bias = bias is not None
        return linear(x2d, weight, bias)

    @staticmethod
    def backward(ctx, grad):
        x2d, weight = ctx.saved_tensors
        grad = grad.contiguous()
        # A strided (transposed) weight view: oneDNN reads it in place, faster than a copy.
        gx = linear(grad, weight.t(), None) if ctx.needs_input_grad[0] else None
        gw = grad.t().mm(x2d) if ctx.needs_input_grad[1] else None
        gb = grad.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return gx, gw, gb


def can_use_mkldnn_train_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32
            and not torch.is_autocast_enabled('cpu') and mkldnn_linear_available())


def fast_linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (..., C) input, through oneDNN when that applies."""
    if not can_use_mkldnn_train_linear(x, layer.weight):
        return layer(x)
    out = _MkldnnLinear.apply(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
    return out.view(*x.shape[:-1], out.shape[-1])


# The channel MLP runs over row chunks when its hidden (rows x 4C) tensor would hold more
# than MLP_CHUNK_ABOVE bytes, in chunks of at most MLP_CHUNK_BYTES. Why: glibc's malloc
# serves blocks above its mmap threshold (adaptive, at most 32 MiB) with fresh pages that
# fault on first touch in every step, and a chunk's hidden tensor stays in cache between
# the GEMM that writes it and the next op. Smaller tensors (the later stages, where the
# GEMMs are compute-bound) run whole. Measurements: docs/performance.md.
MLP_CHUNK_BYTES = 4 * 2**20
MLP_CHUNK_ABOVE = 16 * 2**20


def row_chunks(rows: int, row_bytes: int, limit: int = MLP_CHUNK_BYTES) -> list:
    """Even row slices covering ``range(rows)``, at most ``limit`` bytes each (>= 1 row).

    One slice when all rows hold at most ``MLP_CHUNK_ABOVE`` bytes.
    """
    if rows * row_bytes <= MLP_CHUNK_ABOVE:
        return [slice(0, rows)]
    most = max(1, limit // max(1, row_bytes))  # rows that fit under the limit
    chunks = max(1, -(-rows // most))
    bounds = [rows * i // chunks for i in range(chunks + 1)]
    return [slice(start, stop) for start, stop in zip(bounds[:-1], bounds[1:])]


def cat_rows(parts: list) -> torch.Tensor:
    """The row chunks' results as one tensor (no copy for a single chunk)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def fold_layer_scale(w2, b2, layer_scale):
    """fc2's weight and bias with a per-output-channel layer scale folded in (None: as is)."""
    if layer_scale is None:
        return w2, b2
    return w2 * layer_scale[:, None], None if b2 is None else b2 * layer_scale


class _NormMlpResidual(torch.autograd.Function):
    """``res_scale * x + layer_scale * fc2(gelu(fc1(gn(x))))``, fp32 (B, H, W, C) x, by hand.

    gn is a one-group GroupNorm (PoolFormer's norm2), GELU the exact one. Layer scale is
    folded into fc2 (``W2' = diag(ls) W2``), so the residual add happens inside the oneDNN
    GEMM and neither the scaled branch nor the GEMM's own output is ever stored; the
    layer-scale gradient comes from the (C, 4C) weight gradient instead of a pass over the
    activations. Gradients are the chain rule of the same expression.
    """

    @staticmethod
    def forward(ctx, x, gn_weight, gn_bias, w1, b1, w2, b2, layer_scale, res_scale, eps,
                channels_last):
        shape, c = x.shape, x.shape[-1]
        normed, mean, rstd = group_norm1_forward(x, gn_weight, gn_bias, eps)
        normed = normed.view(-1, c)
        w2s, b2s = fold_layer_scale(w2, b2, layer_scale)
        residual = (x if res_scale is None else x * res_scale).view(-1, c)
        chunks = row_chunks(normed.shape[0], w1.shape[0] * x.element_size())
        hidden, act, out = [], [], []
        for rows in chunks:
            hidden.append(linear(normed[rows], w1, b1))
            act.append(torch.nn.functional.gelu(hidden[-1]))
            out.append(linear_add(act[-1], residual[rows], w2s, b2s))
        ctx.chunks, ctx.channels_last = chunks, channels_last
        ctx.flags = (gn_bias is not None, b1 is not None, b2 is not None)
        ctx.save_for_backward(x, normed, mean, rstd, gn_weight, w1, w2, b2, w2s, layer_scale,
                              res_scale, *hidden, *act)
        return cat_rows(out).view(shape)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (x, normed, mean, rstd, gn_weight, w1, w2, b2, w2s, layer_scale, res_scale,
         *saved) = ctx.saved_tensors
        hidden, act = saved[:len(ctx.chunks)], saved[len(ctx.chunks):]
        (need_x, need_gw, need_gb, need_w1, need_b1, need_w2, need_b2, need_ls,
         need_rs) = ctx.needs_input_grad[:9]
        has_gb, has_b1, has_b2 = ctx.flags
        c = x.shape[-1]
        g = grad.contiguous().view(-1, c)
        need_dw2s = need_w2 or need_ls
        need_normed = need_x or need_gw or need_gb
        # oneDNN takes the transposed weights as strided views: faster than a copy (measured)
        w2s_t, w1_t = w2s.t(), w1.t()
        dw1 = dw2s = db1 = None
        dnormed = []
        for rows, h, a in zip(ctx.chunks, hidden, act):
            g_rows = g[rows]
            if need_dw2s:
                dw2s = g_rows.t().mm(a) if dw2s is None else dw2s.addmm_(g_rows.t(), a)
            if not (need_w1 or need_b1 or need_normed):
                continue
            dh = torch.ops.aten.gelu_backward(linear(g_rows, w2s_t, None), h)
            if need_w1:
                dw1 = dh.t().mm(normed[rows]) if dw1 is None else dw1.addmm_(dh.t(), normed[rows])
            if need_b1 and has_b1:
                db1 = dh.sum(0) if db1 is None else db1.add_(dh.sum(0))
            if need_normed:
                dnormed.append(linear(dh, w1_t, None))
        db2s = g.sum(0) if has_b2 and (need_b2 or need_ls) else None
        dx = dgw = dgb = None
        if need_normed:
            dn = cat_rows(dnormed).view(x.shape)
            dx, dgw, dgb = group_norm1_backward(dn, x, gn_weight, mean, rstd, need_x,
                                                need_gw and gn_weight is not None,
                                                has_gb and need_gb, ctx.channels_last)
        if need_x:
            dx = dx + (grad if res_scale is None else grad * res_scale)
        drs = (grad * x).sum((0, 1, 2)) if need_rs else None
        dls = dw2 = db2 = None
        if layer_scale is None:
            dw2, db2 = dw2s, db2s
        else:
            if need_ls:
                dls = (dw2s * w2).sum(1)
                if has_b2:
                    dls = dls + db2s * b2
            if need_w2:
                dw2 = dw2s * layer_scale[:, None]
            if need_b2 and has_b2:
                db2 = db2s * layer_scale
        return (dx, dgw, dgb, dw1, db1, dw2 if need_w2 else None, db2 if need_b2 else None,
                dls, drs, None, None)


def norm_mlp_residual(x, norm, mlp, layer_scale, res_scale, channels_last: bool = True):
    """``_NormMlpResidual`` on a block's modules (``layer_scale``/``res_scale``: (C,) or None;
    ``channels_last``: the norm's backward kernel may read channels-last views)."""
    return _NormMlpResidual.apply(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias,
                                  mlp.fc2.weight, mlp.fc2.bias, layer_scale, res_scale,
                                  norm.eps, channels_last)



def mlp_inference(x, norm, mlp, layer_scale, res_scale, exact_gelu: bool) -> torch.Tensor:
    """``res_scale * x + ls * mlp(norm(x))`` without autograd: fc1 + activation and fc2 +
    residual as single oneDNN GEMMs, over row chunks.

    Layer scale is folded into fc2's weights on the fly (a C x 4C product, negligible next
    to the GEMM), so the state_dict is unchanged and nothing is cached.
    """
    c = x.shape[-1]
    tokens = norm(x).reshape(-1, c)
    w1 = mlp.fc1.weight.to(x.dtype)
    b1 = None if mlp.fc1.bias is None else mlp.fc1.bias.to(x.dtype)
    w2, b2 = fold_layer_scale(mlp.fc2.weight, mlp.fc2.bias, layer_scale)
    w2, b2 = w2.to(x.dtype), None if b2 is None else b2.to(x.dtype)
    residual = (x if res_scale is None else x * res_scale.to(x.dtype)).reshape(-1, c)
    out = []
    for rows in row_chunks(tokens.shape[0], w1.shape[0] * x.element_size()):
        if exact_gelu:
            hidden = linear_gelu(tokens[rows], w1, b1)
        else:
            hidden = mlp.act(linear(tokens[rows], w1, b1))
        out.append(linear_add(hidden, residual[rows], w2, b2))
    return cat_rows(out).view(x.shape)
