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
  come from (B, C) sums. (The native backward on channels-last views is wrong on CUDA:
  issue 12. The CPU, where the parity suite proves it, may use it: one pass instead of
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
"""
from typing import Optional

import torch
import torch.nn.functional as F


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


class _GroupNorm1(torch.autograd.Function):
    """One-group GroupNorm of a (B, H, W, C) tensor with per-channel affine (C,) or None."""

    @staticmethod
    def forward(ctx, x, weight, bias, eps, channels_last):
        x = x.contiguous()
        out, mean, rstd = group_norm1_forward(x, weight, bias, eps)
        ctx.save_for_backward(x, weight, mean, rstd)
        ctx.has_weight, ctx.has_bias = weight is not None, bias is not None
        ctx.channels_last = channels_last
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, weight, mean, rstd = ctx.saved_tensors
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        dx, dw, db = group_norm1_backward(grad, x, weight, mean, rstd, need_x,
                                          ctx.has_weight and need_w, ctx.has_bias and need_b,
                                          ctx.channels_last)
        if dw is not None:
            dw = dw.to(weight.dtype)
        if db is not None:
            db = db.to(weight.dtype if weight is not None else grad.dtype)
        return dx, dw, db, None, None


def group_norm1(x, weight, bias, eps, channels_last: bool = False):
    """One-group GroupNorm of (B, H, W, C) x (``channels_last``: see the backward)."""
    return _GroupNorm1.apply(x, weight, bias, eps, channels_last)


class _GroupNorm1Rstd(torch.autograd.Function):
    """1 / sqrt(var + eps) per sample of a (B, H, W, C) tensor, shape (B, 1, 1, 1)."""

    @staticmethod
    def forward(ctx, x, eps):
        x = x.contiguous()
        mean, rstd = group_norm1_stats(x, eps)
        mean, rstd = mean.view(-1, 1, 1, 1).to(x.dtype), rstd.view(-1, 1, 1, 1).to(x.dtype)
        ctx.save_for_backward(x, mean, rstd)
        return rstd

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_rstd):
        x, mean, rstd = ctx.saved_tensors
        # d rstd / d x = -rstd^3 (x - mean) / N, N = H * W * C
        k = grad_rstd * rstd.pow(3) * (-1.0 / x[0].numel())
        return torch.addcmul(-mean * k, x, k), None


def group_norm1_rstd(x: torch.Tensor, eps: float) -> torch.Tensor:
    return _GroupNorm1Rstd.apply(x, eps)


def _window_counts(size: int, radius: int, device, dtype) -> torch.Tensor:
    """Cells of a length-``size`` axis under a (2 radius + 1) window at each position."""
    pos = torch.arange(size, device=device)
    return ((pos + radius).clamp(max=size - 1) - (pos - radius).clamp(min=0) + 1).to(dtype)


def inverse_counts(h: int, w: int, radius: int, device, dtype) -> torch.Tensor:
    """1 / (in-image cells under the window) at each position, (H, W, 1)."""
    rh = _window_counts(h, radius, device, dtype).reciprocal()
    rw = _window_counts(w, radius, device, dtype).reciprocal()
    return (rh[:, None] * rw[None, :])[..., None]


def _pool_nhwc(x: torch.Tensor, pool_size: int, sum_only: bool,
               channels_last: bool) -> torch.Tensor:
    """avg_pool2d (or its window sums) of (B, H, W, C) x; the kernel gets a channels-last
    view or contiguous NCHW memory."""
    nchw = x.permute(0, 3, 1, 2)
    if not channels_last:
        nchw = nchw.contiguous()
    kwargs = dict(divisor_override=1, count_include_pad=True) if sum_only else \
        dict(count_include_pad=False)
    out = F.avg_pool2d(nchw, pool_size, stride=1, padding=pool_size // 2, **kwargs)
    return out.permute(0, 2, 3, 1)


class _AvgPoolNHWC(torch.autograd.Function):
    """Average pool of (B, H, W, C): stride 1, 'same' padding, padding not counted."""

    @staticmethod
    def forward(ctx, x, pool_size, channels_last):
        ctx.pool_size, ctx.channels_last = pool_size, channels_last
        return _pool_nhwc(x, pool_size, False, channels_last)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        k = ctx.pool_size
        _, h, w, _ = grad.shape
        scaled = grad * inverse_counts(h, w, k // 2, grad.device, grad.dtype)
        return _pool_nhwc(scaled, k, True, ctx.channels_last), None, None


def avg_pool(x: torch.Tensor, pool_size: int, channels_last: bool) -> torch.Tensor:
    """Average pool of (B, H, W, C) x (stride 1, 'same', padding not counted)."""
    return _AvgPoolNHWC.apply(x, pool_size, channels_last)


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
    weight = weight.to(x.dtype)  # parameters are fp32 under bf16/fp16 autocast
    pooled = avg_pool(x, pool_size, channels_last)
    if res_scale is not None:
        return torch.addcmul(x * res_scale.to(x.dtype), pooled - x, weight)
    return torch.lerp(x, pooled, weight)  # x + weight * (pooled - x)
