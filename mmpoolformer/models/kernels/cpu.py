"""The CPU backend: oneDNN GEMMs and the fused channel MLP, with their conditions of use.

- oneDNN's linear is faster than MKL's ``addmm`` at PoolFormer's small channel counts
  (K = 64, 128), and fuses exact GELU or a residual add into the GEMM (``linear_gelu`` /
  ``linear_add``). These ops have no autograd formula: they serve inference directly and
  training inside the custom operators written here.
- The channel MLP line ``res_scale * x + ls * fc2(gelu(fc1(gn1(x))))`` is one custom
  operator in training, in fp32, bf16 or under bf16 autocast (``norm_mlp_residual``), and
  a chain of fused oneDNN calls in inference (``mlp_inference``). Its one-group norm is
  the portable one (``portable.py``).
Figures behind these choices are in ``docs/performance.md``.
"""
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from ... import compat
from .portable import compute_dtype, group_norm1_backward, group_norm1_forward, residual_dtype

# Native kernels that get channels-last views of the (B, H, W, C) features on the CPU:
# proved forward and backward by the CPU parity suite, which CI runs on every change.
# (avg_pool2d with count_include_pad=False is much faster on them than on NCHW memory.)
CHANNELS_LAST_VERIFIED = frozenset({'conv2d', 'avg_pool2d', 'group_norm', 'batch_norm'})
# torch.compile on the CPU keeps the fast paths (as custom operators): they beat the kernels
# Inductor generates for the same ops (docs/performance.md).
COMPILE_WITH_FAST_PATHS = True
# Inference (no autograd) with ``compile=True`` runs the eager fast paths on the CPU: the
# compiled blocks would call the same operators, plus a guard check and the compiled graph's
# wrapper at every block call, and measured 2-4% slower (docs/performance.md).
COMPILE_INFERENCE = False


def _has_mkldnn_linear() -> bool:
    try:
        return torch.backends.mkldnn.is_available() and \
            hasattr(torch.ops.mkldnn, '_linear_pointwise')
    except (AttributeError, RuntimeError):
        return False


# Decided once at import: a constant that torch.compile reads without tracing the probe.
MKLDNN_LINEAR = _has_mkldnn_linear()


def mkldnn_linear_available() -> bool:
    return MKLDNN_LINEAR


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


# ``F.linear`` on 2-D fp32 CPU tensors with oneDNN GEMMs where MKL is slow: at
# PoolFormer's small channel counts (K = 64, 128) oneDNN's GEMM is faster than the ``addmm``
# behind ``F.linear``; the input gradient is such a GEMM too. The weight gradient (K =
# number of tokens) stays a plain ``mm``. Custom operators, so that torch.compile keeps them.
@compat.custom_op('mmpoolformer::mkldnn_linear', mutates_args=(), device_types='cpu')
def _mkldnn_linear_op(x2d: Tensor, weight: Tensor, bias: Optional[Tensor]) -> Tensor:
    return linear(x2d.contiguous(), weight, bias)


@_mkldnn_linear_op.register_fake
def _(x2d, weight, bias):
    return x2d.new_empty((x2d.shape[0], weight.shape[0]))


@compat.custom_op('mmpoolformer::mkldnn_linear_backward', mutates_args=(),
                         device_types='cpu')
def _mkldnn_linear_backward_op(grad: Tensor, x2d: Tensor, weight: Tensor,
                               needs: List[bool]) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of ``mkldnn_linear``; empty where ``needs`` is False."""
    grad = grad.contiguous()
    # A strided (transposed) weight view: oneDNN reads it in place, faster than a copy.
    gx = linear(grad, weight.t(), None) if needs[0] else grad.new_empty(0)
    gw = grad.t().mm(x2d) if needs[1] else grad.new_empty(0)
    gb = grad.sum(0) if needs[2] else grad.new_empty(0)
    return gx, gw, gb


@_mkldnn_linear_backward_op.register_fake
def _(grad, x2d, weight, needs):
    return (x2d.new_empty(x2d.shape) if needs[0] else grad.new_empty(0),
            weight.new_empty(weight.shape) if needs[1] else grad.new_empty(0),
            grad.new_empty(weight.shape[0]) if needs[2] else grad.new_empty(0))


def _mkldnn_linear_setup(ctx, inputs, output):
    x2d, weight, bias = inputs
    ctx.save_for_backward(x2d, weight)
    ctx.has_bias = bias is not None


def _mkldnn_linear_grad(ctx, grad):
    x2d, weight = ctx.saved_tensors
    needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
             ctx.has_bias and ctx.needs_input_grad[2]]
    grads = _mkldnn_linear_backward_op(grad, x2d, weight, needs)
    return tuple(g if need else None for g, need in zip(grads, needs))


_mkldnn_linear_op.register_autograd(_mkldnn_linear_grad, setup_context=_mkldnn_linear_setup)


def can_fuse_mlp(x: Tensor, weight: Tensor) -> bool:
    """Whether the fused training MLP (``norm_mlp_residual``) computes what the plain
    modules would: in fp32, in bf16 (a bf16 model), or under bf16 autocast."""
    if x.device.type != 'cpu' or not MKLDNN_LINEAR:
        return False
    if compat.autocast_enabled('cpu'):
        return (x.dtype in (torch.float32, torch.bfloat16)
                and compat.autocast_dtype('cpu') == torch.bfloat16)
    return x.dtype == weight.dtype and x.dtype in (torch.float32, torch.bfloat16)


def can_use_mkldnn_train_linear(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (x.device.type == 'cpu' and x.dtype == weight.dtype == torch.float32
            and not compat.autocast_enabled('cpu') and mkldnn_linear_available())


def fast_linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (..., C) input, through oneDNN when that applies."""
    if not can_use_mkldnn_train_linear(x, layer.weight):
        return layer(x)
    out = _mkldnn_linear_op(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
    return out.view(*x.shape[:-1], out.shape[-1])


# The channel MLP runs over row chunks when its hidden (rows x 4C) tensor would hold more
# than MLP_CHUNK_ABOVE bytes, in chunks of at most MLP_CHUNK_BYTES (as long as MLP_CHUNKS
# chunks suffice; beyond that, in MLP_CHUNKS larger ones). Why: glibc's malloc serves
# blocks above its mmap threshold (adaptive, at most 32 MiB) with fresh pages that fault
# on first touch in every step, and a chunk's hidden tensor stays in cache between the GEMM
# that writes it and the next op. Smaller tensors (the later stages, where the GEMMs are
# compute-bound) run whole. Measurements: docs/performance.md.
MLP_CHUNK_BYTES = 4 * 2**20
MLP_CHUNK_ABOVE = 16 * 2**20
MLP_CHUNKS = 16


def chunk_bounds(rows, row_bytes) -> list:
    """MLP_CHUNKS + 1 row bounds of the chunks above (the last chunks may be empty).

    Written without branching on ``rows`` and ``row_bytes``, so that torch.compile's fake
    tensors, whose sizes are symbols, get the same chunk sizes without guarding on them.
    """
    most = torch.sym_max(1, MLP_CHUNK_BYTES // row_bytes)  # rows that fit under the limit
    step = compat.sym_ite(rows * row_bytes <= MLP_CHUNK_ABOVE, rows,
                         torch.sym_max(-(-rows // MLP_CHUNKS), most))
    return [torch.sym_min(rows, i * step) for i in range(MLP_CHUNKS + 1)]


def row_chunks(rows: int, row_bytes: int) -> list:
    """The non-empty row slices of ``chunk_bounds``."""
    bounds = chunk_bounds(rows, row_bytes)
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def cat_rows(parts: list) -> torch.Tensor:
    """The row chunks' results as one tensor (no copy for a single chunk)."""
    return parts[0] if len(parts) == 1 else torch.cat(parts)


def fold_layer_scale(w2, b2, layer_scale):
    """fc2's weight and bias with a per-output-channel layer scale folded in (None: as is)."""
    if layer_scale is None:
        return w2, b2
    return w2 * layer_scale[:, None], None if b2 is None else b2 * layer_scale


def _cast(t: Optional[Tensor], dtype) -> Optional[Tensor]:
    return None if t is None else t.to(dtype)


# The channel-MLP line ``res_scale * x + layer_scale * fc2(gelu(fc1(gn(x))))`` of a
# PoolFormer block, written by hand: gn is a one-group GroupNorm (norm2), GELU the exact
# one, x a contiguous (B, H, W, C) tensor. Dtypes are those of the plain modules: the norm
# runs in x's dtype, the GEMMs and GELU in ``compute`` (bf16 under bf16 autocast, else x's
# dtype; the parameters are cast to it, as autocast casts them), and the line's result has
# the type-promoted dtype of its terms (``residual_dtype``: fp32 for an fp32 or bf16 x with
# fp32 scales under autocast). Layer scale is folded into fc2 (``W2' = diag(ls) W2``), so
# the scaled branch is never stored and, where the result has the GEMM's dtype, the residual
# add happens inside the oneDNN GEMM; the layer-scale gradient comes from the (C, 4C) weight
# gradient instead of a pass over the activations. Gradients are the chain rule of the same
# expression. Forward and backward are custom operators, so that torch.compile keeps them.
@compat.custom_op('mmpoolformer::norm_mlp_residual', mutates_args=(), device_types='cpu')
def _norm_mlp_residual_op(x: Tensor, gn_weight: Optional[Tensor], gn_bias: Optional[Tensor],
                          w1: Tensor, b1: Optional[Tensor], w2: Tensor, b2: Optional[Tensor],
                          layer_scale: Optional[Tensor], res_scale: Optional[Tensor],
                          eps: float, compute: torch.dtype, channels_last: bool,
                          whole: bool) -> List[Tensor]:
    """[out, tokens, mean, rstd, *hidden, *act]: all but ``out`` are kept for the backward
    (``tokens``: the normed x in ``compute``); ``hidden`` and ``act`` are MLP_CHUNKS row
    chunks each (``chunk_bounds``; ``whole``: one chunk of every row, then empty ones)."""
    c = x.shape[-1]
    with torch.autocast('cpu', enabled=False):
        x = x.contiguous()
        normed, mean, rstd = group_norm1_forward(x, gn_weight, gn_bias, eps)
        tokens = normed.view(-1, c).to(compute)
        w1, b1 = w1.to(compute), _cast(b1, compute)
        w2s, b2s = fold_layer_scale(w2, b2, layer_scale)
        w2s, b2s = w2s.to(compute), _cast(b2s, compute)
        out_dtype = residual_dtype(x, layer_scale, res_scale, branch=compute)
        residual = (x if res_scale is None else x * res_scale).view(-1, c).to(out_dtype)
        rows = tokens.shape[0]
        bounds = [0] + [rows] * MLP_CHUNKS if whole else \
            chunk_bounds(rows, w1.shape[0] * tokens.element_size())
        hidden, act, out = [], [], []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            if stop == start:
                hidden.append(tokens.new_empty((0, w1.shape[0])))
                act.append(tokens.new_empty((0, w1.shape[0])))
                continue
            hidden.append(linear(tokens[start:stop], w1, b1))
            act.append(torch.nn.functional.gelu(hidden[-1]))
            out.append(residual_add(act[-1], residual[start:stop], w2s, b2s))
    return [cat_rows(out).view(x.shape), tokens, mean, rstd, *hidden, *act]


@_norm_mlp_residual_op.register_fake
def _(x, gn_weight, gn_bias, w1, b1, w2, b2, layer_scale, res_scale, eps, compute,
      channels_last, whole):
    rows, hid = x[..., 0].numel(), w1.shape[0]
    if whole:
        sizes = [rows] + [0] * (MLP_CHUNKS - 1)
    else:
        # The chunks' row counts are left to the kernel (unbacked sizes): torch.compile then
        # neither guards on them nor recompiles when an input size moves a chunk boundary.
        ctx = torch.library.get_ctx()
        sizes = [ctx.new_dynamic_size() for _ in range(MLP_CHUNKS)]
    chunks = [x.new_empty((n, hid), dtype=compute) for _ in range(2) for n in sizes]
    out_dtype = residual_dtype(x, layer_scale, res_scale, branch=compute)
    return [torch.empty_like(x, dtype=out_dtype, memory_format=torch.contiguous_format),
            x.new_empty((rows, x.shape[-1]), dtype=compute),
            x.new_empty((x.shape[0], 1)), x.new_empty((x.shape[0], 1)), *chunks]


def residual_add(act: Tensor, residual: Tensor, w2: Tensor, b2: Optional[Tensor]) -> Tensor:
    """``residual + act @ w2.T + b2``: one oneDNN GEMM where the residual has the GEMM's
    dtype, else the GEMM's result added in the residual's (wider) dtype."""
    if residual.dtype == act.dtype:
        return linear_add(act, residual, w2, b2)
    return torch.add(residual, linear(act, w2, b2))


# The gradients of norm_mlp_residual's inputs, in this order; those not asked for are empty.
_MLP_INPUTS = ('x', 'gn_weight', 'gn_bias', 'w1', 'b1', 'w2', 'b2', 'layer_scale',
               'res_scale')


@compat.custom_op('mmpoolformer::norm_mlp_residual_backward', mutates_args=(),
                         device_types='cpu')
def _norm_mlp_residual_backward_op(
        grad: Tensor, x: Tensor, tokens: Tensor, mean: Tensor, rstd: Tensor,
        hidden: List[Tensor], act: List[Tensor], gn_weight: Optional[Tensor], w1: Tensor,
        w2: Tensor, b2: Optional[Tensor],
        layer_scale: Optional[Tensor], res_scale: Optional[Tensor], needs: List[bool],
        channels_last: bool) -> List[Tensor]:
    with torch.autocast('cpu', enabled=False):
        return _norm_mlp_residual_grads(grad, x, tokens, mean, rstd, hidden, act, gn_weight,
                                        w1, w2, b2, layer_scale, res_scale, needs,
                                        channels_last)


def _accumulate(total: Optional[Tensor], part: Tensor, acc: torch.dtype) -> Tensor:
    """``total + part`` in the accumulation dtype (each chunk's result is rounded once)."""
    part = part.to(acc)
    return part if total is None else total.add_(part)


def _accumulate_mm(total: Optional[Tensor], a: Tensor, b: Tensor, acc: torch.dtype) -> Tensor:
    """``total + a @ b``: in place where the GEMM runs in the accumulation dtype; in a lower
    precision each product is rounded once and summed in ``acc``."""
    if total is not None and a.dtype == acc:
        return total.addmm_(a, b)
    return _accumulate(total, a.mm(b), acc)


def _norm_mlp_residual_grads(grad, x, tokens, mean, rstd, hidden, act, gn_weight, w1, w2, b2,
                             layer_scale, res_scale, needs, channels_last) -> List[Tensor]:
    need_x, need_gw, need_gb, need_w1, need_b1, need_w2, need_b2, need_ls, need_rs = needs
    dt, ct, pdt, c = x.dtype, tokens.dtype, w1.dtype, x.shape[-1]
    acc = torch.float64 if dt == torch.float64 else torch.float32
    g = grad.contiguous().view(-1, c)
    g_low = g.to(ct)  # the gradient that reaches fc2's output, in fc2's dtype
    need_dw2s = need_w2 or need_ls
    need_normed = need_x or need_gw or need_gb
    w2s = fold_layer_scale(w2, None, layer_scale)[0].to(ct)
    # oneDNN takes the transposed weights as strided views: faster than a copy (measured)
    w2s_t, w1_t = w2s.t(), w1.to(ct).t()
    dw1 = dw2s = db1 = None
    dnormed = []
    # The forward's row chunks: the (rows, 4C) temporaries of each stay small and in cache.
    start = 0
    for h, a in zip(hidden, act):
        rows, start = slice(start, start + h.shape[0]), start + h.shape[0]
        if rows.stop == rows.start:
            continue
        g_rows = g_low[rows]
        if need_dw2s:
            dw2s = _accumulate_mm(dw2s, g_rows.t(), a, acc)
        if not (need_w1 or need_b1 or need_normed):
            continue
        dh = torch.ops.aten.gelu_backward(linear(g_rows, w2s_t, None), h)
        if need_w1:
            dw1 = _accumulate_mm(dw1, dh.t(), tokens[rows], acc)
        if need_b1:
            # (in dh's dtype, accumulated in fp32 by the kernel: a dtype= argument would
            # first copy all of bf16 dh to fp32)
            db1 = _accumulate(db1, dh.sum(0), acc)
        if need_normed:
            dnormed.append(linear(dh, w1_t, None))
    dx = dgw = dgb = None
    if need_normed:
        dx, dgw, dgb = group_norm1_backward(cat_rows(dnormed).view(x.shape).to(dt), x,
                                            gn_weight, mean, rstd, need_x, need_gw, need_gb,
                                            channels_last)
    if need_x:
        direct = grad if res_scale is None else grad * res_scale.to(grad.dtype)
        dx = (dx + direct).to(dt)
    drs = (grad * x).sum((0, 1, 2), dtype=acc) if need_rs else None
    db2s = g.sum(0, dtype=acc) if need_b2 or (need_ls and b2 is not None) else None
    dls = dw2 = db2 = None
    if layer_scale is None:
        dw2, db2 = dw2s, db2s
    else:
        ls = layer_scale.to(acc)
        if need_ls:
            dls = (dw2s * w2.to(acc)).sum(1)
            if b2 is not None:
                dls = dls + db2s * b2.to(acc)
        if need_w2:
            dw2 = dw2s * ls[:, None]
        if need_b2:
            db2 = db2s * ls
    grads = (dx, dgw, dgb, dw1, db1, dw2, db2, dls, drs)
    return [grad.new_empty(0) if not need else t.contiguous() if i == 0 else t.to(pdt)
            for i, (t, need) in enumerate(zip(grads, needs))]


@_norm_mlp_residual_backward_op.register_fake
def _(grad, x, tokens, mean, rstd, hidden, act, gn_weight, w1, w2, b2, layer_scale,
      res_scale, needs, channels_last):
    c, hid, pdt = x.shape[-1], w1.shape[0], w1.dtype
    shapes = ((c, ), (c, ), (hid, c), (hid, ), (c, hid), (c, ), (c, ), (c, ))
    out = [torch.empty_like(x, memory_format=torch.contiguous_format) if needs[0]
           else grad.new_empty(0)]
    return out + [grad.new_empty(shape, dtype=pdt) if need else grad.new_empty(0)
                  for shape, need in zip(shapes, needs[1:])]


def _norm_mlp_residual_setup(ctx, inputs, output):
    (x, gn_weight, gn_bias, w1, b1, w2, b2, layer_scale, res_scale, _, _,
     channels_last, _) = inputs
    ctx.mark_non_differentiable(*output[1:])
    ctx.save_for_backward(x, *output[1:], gn_weight, w1, w2, b2, layer_scale, res_scale)
    ctx.present = [t is not None for t in inputs[:9]]
    ctx.channels_last = channels_last


def _norm_mlp_residual_grad(ctx, grads_out):
    needs = [need and present
             for need, present in zip(ctx.needs_input_grad[:9], ctx.present)]
    x, tokens, mean, rstd, *saved = ctx.saved_tensors
    hidden, act, params = (saved[:MLP_CHUNKS], saved[MLP_CHUNKS:2 * MLP_CHUNKS],
                           saved[2 * MLP_CHUNKS:])
    grads = _norm_mlp_residual_backward_op(
        grads_out[0], x, tokens, mean, rstd, hidden, act, *params, needs, ctx.channels_last)
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None, ) * 4


_norm_mlp_residual_op.register_autograd(_norm_mlp_residual_grad,
                                        setup_context=_norm_mlp_residual_setup)


def norm_mlp_residual(x, norm, mlp, layer_scale, res_scale, channels_last: bool = True):
    """The fused channel-MLP line on a block's modules (``layer_scale``/``res_scale``: (C,)
    or None; ``channels_last``: the norm's backward kernel may read channels-last views).

    Its row chunks have sizes that only the kernel knows. Where torch.compile would break
    the graph on such an operator (a plain ``torch.compile``, without
    ``capture_dynamic_output_shape_ops``), the MLP runs in one piece instead: the same
    numbers, sizes that follow from the input's, one graph for every input size."""
    return _norm_mlp_residual_op(x, norm.weight, norm.bias, mlp.fc1.weight, mlp.fc1.bias,
                                 mlp.fc2.weight, mlp.fc2.bias, layer_scale, res_scale,
                                 norm.eps, compute_dtype(x), channels_last,
                                 not compat.captures_data_dependent_sizes())[0]


def _mlp_rows(tokens: Tensor, residual: Tensor, w1: Tensor, b1: Optional[Tensor], w2: Tensor,
              b2: Optional[Tensor], act=None) -> Tensor:
    """``residual + fc2(act(fc1(tokens)))`` on 2-D tensors, over row chunks: fc1 with its
    activation and fc2 with the residual as single oneDNN GEMMs (``act`` None: exact GELU
    fused into fc1)."""
    out = []
    for rows in row_chunks(tokens.shape[0], w1.shape[0] * tokens.element_size()):
        if act is None:
            hidden = linear_gelu(tokens[rows], w1, b1)
        else:
            # (an activation with fp32 parameters, StarReLU, returns fp32 under autocast:
            # fc2 takes it in its own dtype, as autocast would cast it)
            hidden = act(linear(tokens[rows], w1, b1)).to(w2.dtype)
        out.append(residual_add(hidden, residual[rows], w2, b2))
    return cat_rows(out)


@compat.custom_op('mmpoolformer::gelu_mlp_residual', mutates_args=(), device_types='cpu')
def _gelu_mlp_residual_op(tokens: Tensor, residual: Tensor, w1: Tensor, b1: Optional[Tensor],
                          w2: Tensor, b2: Optional[Tensor]) -> Tensor:
    """``residual + fc2(gelu(fc1(tokens)))`` (exact GELU) on 2-D tensors, without autograd."""
    return _mlp_rows(tokens.contiguous(), residual.contiguous(), w1, b1, w2, b2)


@_gelu_mlp_residual_op.register_fake
def _(tokens, residual, w1, b1, w2, b2):
    return torch.empty_like(residual, memory_format=torch.contiguous_format)


def mlp_inference(x, norm, mlp, layer_scale, res_scale, exact_gelu: bool) -> Tensor:
    """``res_scale * x + ls * mlp(norm(x))`` without autograd: fc1 + activation and fc2 +
    residual as single oneDNN GEMMs, over row chunks.

    Layer scale is folded into fc2's weights on the fly (a C x 4C product, negligible next
    to the GEMM), so the state_dict is unchanged and nothing is cached. With exact GELU the
    GEMMs are one custom operator (which torch.compile keeps); another activation module
    runs between them in Python (eager only).
    """
    c, dt = x.shape[-1], compute_dtype(x)
    tokens = norm(x).reshape(-1, c).to(dt)
    w2, b2 = fold_layer_scale(mlp.fc2.weight, mlp.fc2.bias, layer_scale)
    residual = (x if res_scale is None else x * res_scale).reshape(-1, c)
    residual = residual.to(residual_dtype(x, layer_scale, res_scale, branch=dt))
    args = (tokens, residual, mlp.fc1.weight.to(dt), _cast(mlp.fc1.bias, dt), w2.to(dt),
            _cast(b2, dt))
    if exact_gelu:
        return _gelu_mlp_residual_op(*args).view(x.shape)
    return _mlp_rows(*args, act=mlp.act).view(x.shape)
