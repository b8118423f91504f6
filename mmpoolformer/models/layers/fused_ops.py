"""Fused CPU kernels used by the MetaFormer block, with their conditions of use.

Measured on the 2-core CPU this package targets (torch 2.13, oneDNN 3.12), at PoolFormer
stage-0 sizes (32768 x 64 tokens):
- ``torch.var_mean`` over a sample takes ~6 ms. The native group-norm kernel on a
  channels-last view takes ~0.3 ms but computes the variance as E[x^2] - E[x]^2: with a
  per-sample mean of 16 std (common deep in the residual stream) its rstd is off by ~1e-5
  relative, 50x worse than the NCHW kernel. ``group_norm1_stats`` runs the accurate NCHW
  (Welford) kernel on the contiguous (B, H, W, C) memory viewed as (B, 1, H*W*C, 1):
  ~0.4 ms, rstd exact to ~1e-8.
- oneDNN's linear is ~2x faster than MKL's ``addmm`` at K=64, and fuses exact GELU or a
  residual add into the GEMM (``linear_gelu`` / ``linear_add``). These ops have no autograd
  formula, so they serve inference only (no grad mode, CPU tensors).
"""
import functools

import torch


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


def group_norm1_stats(x: torch.Tensor, eps: float):
    """Per-sample mean and 1/sqrt(var + eps) of a (B, ...) tensor, each of shape (B, 1).

    No autograd: callers define the backward.
    """
    b, n = x.shape[0], x[0].numel()
    _, mean, rstd = torch.native_group_norm(x.detach().reshape(b, 1, n, 1), None, None, b,
                                            1, n, 1, eps)
    return mean.view(b, 1), rstd.view(b, 1)


class _GroupNorm1Rstd(torch.autograd.Function):
    """1 / sqrt(var + eps) per sample of a (B, H, W, C) tensor, shape (B, 1, 1, 1)."""

    @staticmethod
    def forward(ctx, x, eps):
        mean, rstd = group_norm1_stats(x, eps)
        mean, rstd = mean.view(-1, 1, 1, 1).to(x.dtype), rstd.view(-1, 1, 1, 1).to(x.dtype)
        ctx.save_for_backward(x, mean, rstd)
        return rstd

    @staticmethod
    def backward(ctx, grad_rstd):
        x, mean, rstd = ctx.saved_tensors
        # d rstd / d x = -rstd^3 (x - mean) / N, N = H * W * C
        k = grad_rstd * rstd.pow(3) * (-1.0 / x[0].numel())
        return torch.addcmul(-mean * k, x, k), None


def group_norm1_rstd(x: torch.Tensor, eps: float) -> torch.Tensor:
    return _GroupNorm1Rstd.apply(x, eps)


class _GroupNorm1NHWC(torch.autograd.Function):
    """One-group GroupNorm of a (B, H, W, C) tensor with per-channel affine (C,)."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps):
        out, mean, rstd = _group_norm1_forward(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.has_bias = bias is not None
        return out

    @staticmethod
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        dx, dw, db = _group_norm1_backward(grad, x, weight, mean, rstd, ctx.needs_input_grad[0],
                                           ctx.needs_input_grad[1], ctx.has_bias
                                           and ctx.needs_input_grad[2])
        return dx, dw, db, None


def _group_norm1_forward(x, weight, bias, eps):
    """One-group GroupNorm of (B, H, W, C) x: (output, mean, rstd), statistics (B, 1)."""
    b = x.shape[0]
    mean, rstd = group_norm1_stats(x, eps)
    scale = rstd.view(b, 1, 1, 1) * (1 if weight is None else weight)
    shift = -mean.view(b, 1, 1, 1) * scale
    if bias is not None:
        shift = shift + bias
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype)), mean, rstd


def _group_norm1_backward(grad, x, weight, mean, rstd, need_x, need_w, need_b):
    """Gradients (dx, dweight, dbias) of ``_group_norm1_forward``; None where not needed."""
    b, h, w, c = x.shape
    need_w = need_w and weight is not None
    # The native backward kernel, fed our accurate statistics, on channels-last views.
    dx, dw, db = torch.ops.aten.native_group_norm_backward(
        grad.contiguous().permute(0, 3, 1, 2), x.permute(0, 3, 1, 2),
        mean.to(x.dtype), rstd.to(x.dtype), None if weight is None else weight.to(x.dtype),
        b, c, h * w, 1, [need_x, need_w, need_w or need_b])
    dx = None if dx is None else dx.permute(0, 2, 3, 1)
    return dx, dw if need_w else None, db if need_b else None


def group_norm1_nhwc(x, weight, bias, eps):
    return _GroupNorm1NHWC.apply(x, weight, bias, eps)


class _MkldnnLinear(torch.autograd.Function):
    """``F.linear`` on 2-D fp32 CPU tensors with oneDNN GEMMs where MKL is slow.

    At PoolFormer's small channel counts (K = 64, 128) oneDNN's GEMM is ~2x faster than the
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
# than MLP_CHUNK_ABOVE bytes, in chunks of at most MLP_CHUNK_BYTES. Two effects, measured on
# the 2-core CPU at S12 stage-1 sizes (K = 64):
# - glibc's malloc serves blocks above its mmap threshold (adaptive, at most 32 MiB) with
#   fresh mmap()ed pages, so such a tensor page-faults on first touch, in every step; the
#   MLP's hidden tensors are the only activations that large (S12, batch 2, 512x512:
#   32768 x 256 fp32 = 32 MiB), four per block in training. Chunks stay in the reused heap.
# - a chunk's hidden tensor stays in cache between the GEMM that writes it and the next op:
#   oneDNN's fc1 runs at 73 GFLOP/s on all 32768 rows, 183 on 16384 and 208 on 4096.
# Whole steps: 4 MiB chunks were the fastest of 1-64 MiB for S12 and S36, eval and train
# (~7% over unchunked). Smaller tensors (the later stages, K >= 320, where the GEMMs are
# compute-bound) gain nothing from chunks and lose a little to the extra, smaller GEMMs
# (S36/M48: 1-3%), so they run whole.
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
    def forward(ctx, x, gn_weight, gn_bias, w1, b1, w2, b2, layer_scale, res_scale, eps):
        shape, c = x.shape, x.shape[-1]
        normed, mean, rstd = _group_norm1_forward(x, gn_weight, gn_bias, eps)
        normed = normed.view(-1, c)
        w2s, b2s = fold_layer_scale(w2, b2, layer_scale)
        residual = (x if res_scale is None else x * res_scale).view(-1, c)
        chunks = row_chunks(normed.shape[0], w1.shape[0] * x.element_size())
        hidden, act, out = [], [], []
        for rows in chunks:
            hidden.append(linear(normed[rows], w1, b1))
            act.append(torch.nn.functional.gelu(hidden[-1]))
            out.append(linear_add(act[-1], residual[rows], w2s, b2s))
        ctx.chunks = chunks
        ctx.flags = (gn_bias is not None, b1 is not None, b2 is not None)
        ctx.save_for_backward(x, normed, mean, rstd, gn_weight, w1, w2, b2, w2s, layer_scale,
                              res_scale, *hidden, *act)
        return cat_rows(out).view(shape)

    @staticmethod
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
            dx, dgw, dgb = _group_norm1_backward(dn, x, gn_weight, mean, rstd, need_x, need_gw,
                                                 has_gb and need_gb)
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
                dls, drs, None)


def norm_mlp_residual(x, norm, mlp, layer_scale, res_scale):
    """``_NormMlpResidual`` on a block's modules (``layer_scale``/``res_scale``: (C,) or None)."""
    return _NormMlpResidual.apply(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias,
                                  mlp.fc2.weight, mlp.fc2.bias, layer_scale, res_scale,
                                  norm.eps)

