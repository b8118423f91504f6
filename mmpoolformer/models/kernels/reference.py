"""The plain reference ops: what every fast path must equal.

Plain PyTorch on the layouts the native kernels document: each NCHW kernel gets contiguous
NCHW memory, and autograd derives every backward. This is what runs with the fast paths
switched off, and under tracing, torch.compile, torch.export and ONNX export.
"""
import torch
import torch.nn.functional as F


def nhwc_op(x: torch.Tensor, fn) -> torch.Tensor:
    """NCHW op ``fn`` applied to (B, H, W, C) x via contiguous NCHW memory."""
    return fn(x.permute(0, 3, 1, 2).contiguous()).permute(0, 2, 3, 1).contiguous()


def avg_pool(x: torch.Tensor, pool_size: int) -> torch.Tensor:
    """Average pool of (B, H, W, C) x: stride 1, 'same' padding, padding not counted."""
    return nhwc_op(x, lambda t: F.avg_pool2d(t, pool_size, stride=1, padding=pool_size // 2,
                                             count_include_pad=False))


def group_norm_nchw(num_groups: int, weight, bias, eps: float, dtype):
    """``F.group_norm`` as a function of NCHW input, its fp32 parameters cast to ``dtype``
    (autocast keeps parameters fp32)."""
    weight = None if weight is None else weight.to(dtype)
    bias = None if bias is None else bias.to(dtype)
    return lambda t: F.group_norm(t, num_groups, weight, bias, eps)


def group_norm(x: torch.Tensor, num_groups: int, weight, bias, eps: float) -> torch.Tensor:
    """``F.group_norm`` of (B, H, W, C) x (fp32 parameters cast to x's dtype)."""
    return nhwc_op(x, group_norm_nchw(num_groups, weight, bias, eps, x.dtype))


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (..., C) x, as one 2-D GEMM with its bias (ONNX: one Gemm node)."""
    out = F.linear(x.reshape(-1, x.shape[-1]), layer.weight, layer.bias)
    return out.reshape(*x.shape[:-1], out.shape[-1])
