"""Fast paths whose formulation is the same on every device.

Each backward here is written from operations whose meaning does not depend on memory
layout: element-wise math, reductions, and native forward kernels fed contiguous memory of
the layout they document (or a channels-last view, where the device's backend module lists
that kernel as proved on it). The CPU tests therefore exercise the math that CUDA runs.

- One-group GroupNorm of a contiguous (B, H, W, C) tensor: that memory viewed as
  (B, 1, H*W*C, 1) is a plain contiguous NCHW tensor with one channel, on which the native
  (Welford) kernel gives exact per-sample statistics; the affine is one ``addcmul``. Its
  backward feeds the native backward the same contiguous one-channel view of
  ``grad * weight`` (per-sample reductions), and the per-channel weight and bias gradients
  come from (B, C) sums. (The native backward on channels-last views is wrong on CUDA,
  see ``cuda.py``. The CPU, where the parity suite proves it, may use it: one pass instead of
  four.)
- Average pooling (stride 1, 'same' padding, padding excluded from the count): the
  backward is itself a forward pool: with ``count[p]`` the number of in-image cells under
  the window at p, ``dx = sum_pool(grad / count)`` (the window is symmetric). No pooling
  backward kernel runs at all (PyTorch issue 188344: the CUDA avg_pool2d backward is wrong
  on channels-last memory with padding > 0).
- PoolFormer's token mixing ``x + ls * (pool(norm1(x)) - norm1(x))``: norm1's mean cancels
  in the difference and its per-channel affine commutes with the average, so the branch is
  ``gamma * rstd * (pool(x) - x)`` and the whole line is one ``lerp``; the normalised
  tensor is never materialised.
- Convolution of (B, H, W, C) memory, on a channels-last view where the device proved it.

Every fast path is a custom operator (``torch.library.custom_op``) with a fake
implementation and a registered backward (itself an operator): the same code runs eagerly
and under torch.compile, which keeps each operator as one call in its graph, with
symbolic sizes.
"""
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ... import compat


def group_norm1_stats(x: torch.Tensor, eps: float):
    """Per-sample mean and 1/sqrt(var + eps) of a (B, ...) tensor, each (B, 1); no autograd."""
    b, n = x.shape[0], x[0].numel()
    _, mean, rstd = torch.native_group_norm(x.detach().reshape(b, 1, n, 1), None, None, b,
                                            1, n, 1, eps)
    return mean.view(b, 1), rstd.view(b, 1)


def group_norm1_forward(x, weight, bias, eps):
    """One-group GroupNorm of (B, H, W, C) x: (output, mean, rstd), statistics (B, 1)."""
    b = x.shape[0]
    mean, rstd = group_norm1_stats(x, eps)
    scale = rstd.view(b, 1, 1, 1) * (1 if weight is None else weight)
    shift = -mean.view(b, 1, 1, 1) * scale
    if bias is not None:
        shift = shift + bias
    return torch.addcmul(shift.to(x.dtype), x, scale.to(x.dtype)), mean, rstd


def group_norm1_backward(grad, x, weight, mean, rstd, need_x, need_w, need_b,
                         channels_last: bool = False):
    """Gradients (dx, dweight, dbias) of ``group_norm1_forward``; None where not needed.

    ``channels_last``: the native backward kernel on channels-last views of the (B, H, W,
    C) memory, in one pass (only where the device proved it: the CPU). Otherwise the
    layout-free formulation, the same on every device.
    """
    b, n = x.shape[0], x[0].numel()
    grad = grad.contiguous()
    if channels_last:
        _, h, w, c = x.shape
        dx, dw, db = torch.ops.aten.native_group_norm_backward(
            grad.permute(0, 3, 1, 2), x.permute(0, 3, 1, 2), mean.to(x.dtype),
            rstd.to(x.dtype), None if weight is None else weight.to(x.dtype), b, c, h * w, 1,
            [need_x, need_w, need_w or need_b])
        return (None if dx is None else dx.permute(0, 2, 3, 1), dw if need_w else None,
                db if need_b else None)
    dx = dw = db = None
    if need_x:
        gw = grad if weight is None else grad * weight.to(grad.dtype)
        dx = torch.ops.aten.native_group_norm_backward(
            gw.reshape(b, 1, n, 1), x.reshape(b, 1, n, 1), mean.to(x.dtype).view(b, 1),
            rstd.to(x.dtype).view(b, 1), None, b, 1, n, 1, [True, False, False])[0]
        dx = dx.view(x.shape)
    if need_w or need_b:
        # sum over (b, h, w) of grad * (x - mean_b) * rstd_b, from per-sample channel sums
        g_sum = grad.sum((1, 2), dtype=torch.float64 if x.dtype == torch.float64
                         else torch.float32)
        if need_b:
            db = g_sum.sum(0)
        if need_w:
            gx_sum = (grad * x).sum((1, 2), dtype=g_sum.dtype)
            dw = (rstd.to(g_sum.dtype) * (gx_sum - mean.to(g_sum.dtype) * g_sum)).sum(0)
    return dx, dw, db


def _empty(like: Tensor) -> Tensor:
    """A placeholder output for a gradient that was not asked for (custom ops return
    tensors, not None)."""
    return like.new_empty(0)


def _stat_like(x: Tensor) -> Tensor:
    return x.new_empty((x.shape[0], 1))


# One-group GroupNorm: forward and backward are custom operators (torch.library), so that
# torch.compile keeps them in its graph as single opaque calls (Dynamo cannot trace into an
# autograd.Function's hand-written backward; Inductor would otherwise regenerate them).
@compat.custom_op('mmpoolformer::group_norm1', mutates_args=())
def _group_norm1_op(x: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float,
                    channels_last: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(output, mean, rstd) of a one-group GroupNorm of contiguous (B, H, W, C) x.

    ``channels_last`` only matters for the backward (see ``group_norm1_backward``)."""
    out, mean, rstd = group_norm1_forward(x.contiguous(), weight, bias, eps)
    return out, mean, rstd


@_group_norm1_op.register_fake
def _(x, weight, bias, eps, channels_last):
    return torch.empty_like(x, memory_format=torch.contiguous_format), _stat_like(x), \
        _stat_like(x)


@compat.custom_op('mmpoolformer::group_norm1_backward', mutates_args=())
def _group_norm1_backward_op(grad: Tensor, x: Tensor, weight: Optional[Tensor], mean: Tensor,
                             rstd: Tensor, need_x: bool, need_weight: bool, need_bias: bool,
                             channels_last: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of ``group_norm1``; an empty tensor for each not asked for."""
    dx, dw, db = group_norm1_backward(grad, x.contiguous(), weight, mean, rstd, need_x,
                                      need_weight, need_bias, channels_last)
    param_dtype = grad.dtype if weight is None else weight.dtype
    return (_empty(grad) if dx is None else dx.contiguous(),
            _empty(grad) if dw is None else dw.to(param_dtype),
            _empty(grad) if db is None else db.to(param_dtype))


@_group_norm1_backward_op.register_fake
def _(grad, x, weight, mean, rstd, need_x, need_weight, need_bias, channels_last):
    c, param_dtype = x.shape[-1], grad.dtype if weight is None else weight.dtype
    return (torch.empty_like(x, memory_format=torch.contiguous_format) if need_x
            else _empty(grad),
            grad.new_empty(c, dtype=param_dtype) if need_weight else _empty(grad),
            grad.new_empty(c, dtype=param_dtype) if need_bias else _empty(grad))


def _group_norm1_setup(ctx, inputs, output):
    x, weight, bias, _, channels_last = inputs
    _, mean, rstd = output
    ctx.mark_non_differentiable(mean, rstd)
    ctx.save_for_backward(x, weight, mean, rstd)
    ctx.has_weight, ctx.has_bias, ctx.channels_last = (weight is not None, bias is not None,
                                                       channels_last)


def _group_norm1_grad(ctx, grad, _mean, _rstd):
    x, weight, mean, rstd = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    need_w, need_b = need_w and ctx.has_weight, need_b and ctx.has_bias
    dx, dw, db = _group_norm1_backward_op(
        grad, x, weight, mean, rstd, need_x, need_w, need_b, ctx.channels_last)
    return (dx if need_x else None, dw if need_w else None, db if need_b else None, None,
            None)


_group_norm1_op.register_autograd(_group_norm1_grad, setup_context=_group_norm1_setup)


def group_norm1(x, weight, bias, eps, channels_last: bool = False):
    """One-group GroupNorm of (B, H, W, C) x (``channels_last``: see the backward)."""
    return _group_norm1_op(x.contiguous(), weight, bias, eps, channels_last)[0]


@compat.custom_op('mmpoolformer::group_norm1_rstd', mutates_args=())
def _group_norm1_rstd_op(x: Tensor, eps: float) -> Tuple[Tensor, Tensor]:
    """(rstd, mean) per sample of contiguous (B, H, W, C) x, each (B, 1, 1, 1) in x.dtype."""
    mean, rstd = group_norm1_stats(x.contiguous(), eps)
    return rstd.view(-1, 1, 1, 1).to(x.dtype), mean.view(-1, 1, 1, 1).to(x.dtype)


@_group_norm1_rstd_op.register_fake
def _(x, eps):
    return x.new_empty((x.shape[0], 1, 1, 1)), x.new_empty((x.shape[0], 1, 1, 1))


def _group_norm1_rstd_setup(ctx, inputs, output):
    rstd, mean = output
    ctx.mark_non_differentiable(mean)
    ctx.save_for_backward(inputs[0], mean, rstd)


def _group_norm1_rstd_grad(ctx, grad_rstd, _mean):
    x, mean, rstd = ctx.saved_tensors
    # d rstd / d x = -rstd^3 (x - mean) / N, N = H * W * C: element-wise, which torch.compile
    # fuses into its neighbours.
    k = grad_rstd * rstd.pow(3) * (-1.0 / x[0].numel())
    return torch.addcmul(-mean * k, x, k), None


_group_norm1_rstd_op.register_autograd(_group_norm1_rstd_grad,
                                       setup_context=_group_norm1_rstd_setup)


def group_norm1_rstd(x: Tensor, eps: float) -> Tensor:
    """1 / sqrt(var + eps) per sample of a (B, H, W, C) tensor, shape (B, 1, 1, 1)."""
    return _group_norm1_rstd_op(x.contiguous(), eps)[0]


def _window_counts(size: int, radius: int, device, dtype) -> torch.Tensor:
    """Cells of a length-``size`` axis under a (2 radius + 1) window at each position."""
    pos = torch.arange(size, device=device)
    return ((pos + radius).clamp(max=size - 1) - (pos - radius).clamp(min=0) + 1).to(dtype)


def inverse_counts(h: int, w: int, radius: int, device, dtype) -> torch.Tensor:
    """1 / (in-image cells under the window) at each position, (H, W, 1)."""
    rh = _window_counts(h, radius, device, dtype).reciprocal()
    rw = _window_counts(w, radius, device, dtype).reciprocal()
    return (rh[:, None] * rw[None, :])[..., None]


def _pool_nhwc(x: Tensor, pool_size: int, sum_only: bool, channels_last: bool) -> Tensor:
    """avg_pool2d (or its window sums) of contiguous (B, H, W, C) x; the kernel gets a
    channels-last view or contiguous NCHW memory. The result is (B, H, W, C): contiguous
    with ``channels_last``, else a view of NCHW memory (``_pool_fake``)."""
    nchw = x.contiguous().permute(0, 3, 1, 2)
    if not channels_last:
        nchw = nchw.contiguous()
    kwargs = dict(divisor_override=1, count_include_pad=True) if sum_only else \
        dict(count_include_pad=False)
    out = F.avg_pool2d(nchw, pool_size, stride=1, padding=pool_size // 2, **kwargs)
    return out.permute(0, 2, 3, 1)


def _pool_fake(x: Tensor, channels_last: bool) -> Tensor:
    if channels_last:
        return torch.empty_like(x, memory_format=torch.contiguous_format)
    b, h, w, c = x.shape
    return x.new_empty((b, c, h, w)).permute(0, 2, 3, 1)


@compat.custom_op('mmpoolformer::avg_pool', mutates_args=())
def _avg_pool_op(x: Tensor, pool_size: int, channels_last: bool) -> Tensor:
    """Average pool of (B, H, W, C): stride 1, 'same' padding, padding not counted."""
    return _pool_nhwc(x, pool_size, False, channels_last)


@compat.custom_op('mmpoolformer::avg_pool_backward', mutates_args=())
def _avg_pool_backward_op(grad: Tensor, pool_size: int, channels_last: bool) -> Tensor:
    """The input gradient of ``avg_pool``: ``sum_pool(grad / count)``."""
    _, h, w, _ = grad.shape
    scaled = grad * inverse_counts(h, w, pool_size // 2, grad.device, grad.dtype)
    return _pool_nhwc(scaled, pool_size, True, channels_last)


_avg_pool_op.register_fake(lambda x, pool_size, channels_last: _pool_fake(x, channels_last))
_avg_pool_backward_op.register_fake(
    lambda grad, pool_size, channels_last: _pool_fake(grad, channels_last))


def _avg_pool_setup(ctx, inputs, output):
    ctx.pool_size, ctx.channels_last = inputs[1], inputs[2]


def _avg_pool_grad(ctx, grad):
    return _avg_pool_backward_op(grad, ctx.pool_size,
                                                    ctx.channels_last), None, None


_avg_pool_op.register_autograd(_avg_pool_grad, setup_context=_avg_pool_setup)


def avg_pool(x: Tensor, pool_size: int, channels_last: bool) -> Tensor:
    """Average pool of (B, H, W, C) x (stride 1, 'same', padding not counted)."""
    return _avg_pool_op(x, pool_size, channels_last)


# ----------------------------------------------------------------------- convolution
def conv_output_size(size, kernel_size, stride, padding, dilation) -> list:
    """Output (height, width) of a convolution of an input of ``size`` (height, width)."""
    return [(n + 2 * p - d * (k - 1) - 1) // s + 1
            for n, k, s, p, d in zip(size, kernel_size, stride, padding, dilation)]


def unit_side_in_fp32(device: str, dtype, size, kernel_size, stride, padding,
                      dilation) -> bool:
    """Workaround (the one place for it): on CPUs with AMX-BF16 (Intel Xeon, Sapphire Rapids
    and later), torch's oneDNN bf16/fp16 convolution is wrong when the output height or
    width is 1: relative error 1.24 of the output scale, sometimes NaN, changing between
    calls on the same input (measured on torch 2.13; fp32 is right, as are low-precision
    outputs of other sizes). Such outputs are tiny (a line of pixels), so they are computed
    in fp32 and rounded to the low-precision dtype, forward and backward, on every CPU."""
    return (device == 'cpu' and dtype in (torch.bfloat16, torch.float16)
            and 1 in conv_output_size(size, kernel_size, stride, padding, dilation))


def _nchw_view(x: Tensor, channels_last: bool) -> Tensor:
    nchw = x.contiguous().permute(0, 3, 1, 2)
    return nchw if channels_last else nchw.contiguous()


@compat.custom_op('mmpoolformer::conv2d_nhwc', mutates_args=())
def _conv2d_nhwc_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], stride: List[int],
                    padding: List[int], dilation: List[int], groups: int,
                    channels_last: bool) -> Tensor:
    """``F.conv2d`` of (B, H, W, C) x, result (B, H', W', C') contiguous. The kernel gets a
    channels-last view (``channels_last``: proved on the device) or contiguous NCHW
    memory."""
    with torch.autocast(x.device.type, enabled=False):
        out = F.conv2d(_nchw_view(x, channels_last), weight, bias, stride, padding, dilation,
                       groups)
    return out.permute(0, 2, 3, 1).contiguous()


@_conv2d_nhwc_op.register_fake
def _(x, weight, bias, stride, padding, dilation, groups, channels_last):
    h, w = conv_output_size(x.shape[1:3], weight.shape[2:], stride, padding, dilation)
    return x.new_empty((x.shape[0], h, w, weight.shape[0]))


@compat.custom_op('mmpoolformer::conv2d_nhwc_backward', mutates_args=())
def _conv2d_nhwc_backward_op(grad: Tensor, x: Tensor, weight: Tensor, stride: List[int],
                             padding: List[int], dilation: List[int], groups: int,
                             needs: List[bool], channels_last: bool
                             ) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dbias) of ``conv2d_nhwc``; empty where ``needs`` is False."""
    with torch.autocast(x.device.type, enabled=False):
        dx, dw, db = torch.ops.aten.convolution_backward(
            _nchw_view(grad, channels_last), _nchw_view(x, channels_last), weight,
            [weight.shape[0]], stride, padding, dilation, False, [0, 0], groups, needs)
    # (The weight gradient of a channels-last input comes back channels-last: made
    # contiguous here, as the fake implementation says.)
    return (dx.permute(0, 2, 3, 1).contiguous() if needs[0] else grad.new_empty(0),
            dw.contiguous() if needs[1] else grad.new_empty(0),
            db if needs[2] else grad.new_empty(0))


@_conv2d_nhwc_backward_op.register_fake
def _(grad, x, weight, stride, padding, dilation, groups, needs, channels_last):
    return (torch.empty_like(x, memory_format=torch.contiguous_format) if needs[0]
            else grad.new_empty(0),
            weight.new_empty(weight.shape) if needs[1] else grad.new_empty(0),
            weight.new_empty(weight.shape[0]) if needs[2] else grad.new_empty(0))


def _conv2d_nhwc_setup(ctx, inputs, output):
    x, weight, bias, stride, padding, dilation, groups, channels_last = inputs
    ctx.save_for_backward(x, weight)
    ctx.geometry = stride, padding, dilation, groups
    ctx.has_bias, ctx.channels_last = bias is not None, channels_last


def _conv2d_nhwc_grad(ctx, grad):
    x, weight = ctx.saved_tensors
    needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
             ctx.has_bias and ctx.needs_input_grad[2]]
    grads = _conv2d_nhwc_backward_op(grad, x, weight, *ctx.geometry, needs,
                                                        ctx.channels_last)
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None, ) * 5


_conv2d_nhwc_op.register_autograd(_conv2d_nhwc_grad, setup_context=_conv2d_nhwc_setup)


def compute_dtype(x: Tensor) -> torch.dtype:
    """The dtype a convolution or linear layer computes in on x: autocast's, else x's."""
    device = x.device.type
    if compat.autocast_enabled(device) and x.dtype != torch.float64:
        return compat.autocast_dtype(device)
    return x.dtype


def conv2d_nhwc(x: Tensor, conv: torch.nn.Conv2d, channels_last: bool) -> Tensor:
    """``conv`` applied to (B, H, W, C) x as one custom operator, its inputs cast as
    autocast casts a convolution's (and the AMX workaround: ``unit_side_in_fp32``)."""
    weight, bias = conv.weight, conv.bias
    dt = compute_dtype(x)
    geometry = list(conv.stride), list(conv.padding), list(conv.dilation), conv.groups
    if unit_side_in_fp32(x.device.type, dt, x.shape[1:3], conv.kernel_size, *geometry[:3]):
        out = _conv2d_nhwc_op(x.float(), weight.float(), None if bias is None
                              else bias.float(), *geometry, channels_last)
        return out.to(dt)
    x, weight = x.to(dt), weight.to(dt)
    bias = None if bias is None else bias.to(dt)
    return _conv2d_nhwc_op(x, weight, bias, *geometry, channels_last)


@compat.custom_op('mmpoolformer::pool_mix', mutates_args=())
def _pool_mix_op(x: Tensor, weight: Tensor, res_scale: Optional[Tensor], pool_size: int,
                 channels_last: bool) -> Tuple[Tensor, Tensor]:
    """(``res_scale * x + weight * (avg_pool(x) - x)``, the pooled x) of (B, H, W, C) x,
    with a (B, 1, 1, C) ``weight``; without res scale one ``lerp``."""
    x = x.contiguous()
    pooled = _pool_nhwc(x, pool_size, False, channels_last)
    if res_scale is None:
        out = torch.lerp(x, pooled, weight)
    else:
        out = torch.addcmul(x * res_scale.to(x.dtype), pooled - x, weight)
    return out.contiguous(), pooled


@_pool_mix_op.register_fake
def _(x, weight, res_scale, pool_size, channels_last):
    return torch.empty_like(x, memory_format=torch.contiguous_format), \
        _pool_fake(x, channels_last)


@compat.custom_op('mmpoolformer::pool_mix_backward', mutates_args=())
def _pool_mix_backward_op(grad: Tensor, x: Tensor, pooled: Tensor, weight: Tensor,
                          res_scale: Optional[Tensor], pool_size: int, needs: List[bool],
                          channels_last: bool) -> Tuple[Tensor, Tensor, Tensor]:
    """(dx, dweight, dres_scale) of ``pool_mix``; empty where ``needs`` is False. The
    reductions over the image (dweight, dres_scale) run here, not in a compiled graph whose
    code would depend on the image size."""
    grad = grad.contiguous()
    acc = torch.float64 if x.dtype == torch.float64 else torch.float32
    dx, dweight, dres = (grad.new_empty(0) for _ in range(3))
    if needs[0]:
        scaled = grad * weight
        direct = grad if res_scale is None else grad * res_scale.to(grad.dtype)
        dx = (_avg_pool_backward_op(scaled, pool_size, channels_last) + direct
              - scaled).contiguous()
    if needs[1]:
        dweight = (grad * (pooled - x)).sum((1, 2), keepdim=True, dtype=acc).to(weight.dtype)
    if needs[2]:
        dres = (grad * x).sum((0, 1, 2), dtype=acc).to(res_scale.dtype)
    return dx, dweight, dres


@_pool_mix_backward_op.register_fake
def _(grad, x, pooled, weight, res_scale, pool_size, needs, channels_last):
    return (torch.empty_like(x, memory_format=torch.contiguous_format) if needs[0]
            else grad.new_empty(0),
            weight.new_empty(weight.shape) if needs[1] else grad.new_empty(0),
            torch.empty_like(res_scale) if needs[2] else grad.new_empty(0))


def _pool_mix_setup(ctx, inputs, output):
    x, weight, res_scale, pool_size, channels_last = inputs
    ctx.mark_non_differentiable(output[1])
    ctx.save_for_backward(x, output[1], weight, res_scale)
    ctx.pool_size, ctx.channels_last = pool_size, channels_last
    ctx.has_res_scale = res_scale is not None


def _pool_mix_grad(ctx, grad, _pooled):
    x, pooled, weight, res_scale = ctx.saved_tensors
    needs = [ctx.needs_input_grad[0], ctx.needs_input_grad[1],
             ctx.has_res_scale and ctx.needs_input_grad[2]]
    grads = _pool_mix_backward_op(grad, x, pooled, weight, res_scale,
                                                     ctx.pool_size, needs, ctx.channels_last)
    return tuple(g if need else None for g, need in zip(grads, needs)) + (None, None)


_pool_mix_op.register_autograd(_pool_mix_grad, setup_context=_pool_mix_setup)


def pool_token_mixing(x: torch.Tensor, pool_size: int, norm_weight: Optional[torch.Tensor],
                      norm_bias: Optional[torch.Tensor], eps: float,
                      layer_scale: Optional[torch.Tensor],
                      res_scale: Optional[torch.Tensor], channels_last: bool) -> torch.Tensor:
    """``res_scale * x + layer_scale * (pool(gn1(x)) - gn1(x))`` of (B, H, W, C) x."""
    weight = group_norm1_rstd(x, eps)
    if norm_weight is not None:
        weight = weight * norm_weight
    if norm_bias is not None:
        # The bias cancels exactly in pool(n) - n. Keep it in the graph with its exact
        # zero gradient, so that DDP sees every parameter used.
        weight = weight + 0 * norm_bias
    if layer_scale is not None:
        weight = weight * layer_scale
    # The line's dtype is the official one's: under autocast a bf16 x (a convolution's
    # output) with an fp32 norm weight, layer or res scale gives fp32, the residual
    # stream's dtype from here on. (In bf16, an update of 1e-5 relative size, layer
    # scale's initial value, would round away.)
    x = x.to(residual_dtype(x, norm_weight, layer_scale, res_scale))
    return _pool_mix_op(x, weight.to(x.dtype), res_scale, pool_size, channels_last)[0]


def residual_dtype(x: Tensor, *scales: Optional[Tensor], branch=None) -> torch.dtype:
    """The dtype of ``res_scale * x + layer_scale * branch`` in PyTorch's type promotion
    (``branch``: the branch's dtype, default x's; absent scales are None)."""
    dtype = x.dtype if branch is None else torch.promote_types(x.dtype, branch)
    for scale in scales:
        if scale is not None:
            dtype = torch.promote_types(dtype, scale.dtype)
    return dtype
