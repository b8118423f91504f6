"""The kernels layer: every fast path of the models, in one place, behind one switch.

The model code (``layers``, ``backbones``) states the math with plain modules and calls
this layer for the operations that have faster forms. Each call picks, by the switch
(``fast_paths``, ``MMPOOLFORMER_FAST_PATHS``) and the tensor's device:

- ``reference``: plain PyTorch on documented layouts (the switch off; tracing, compile,
  export; devices without a backend);
- ``portable``: fast paths with one formulation on every device (pooling and one-group
  norm with layout-free backwards, PoolFormer's token mixing as one ``lerp``);
- ``cpu``: oneDNN GEMMs and the fused channel MLP;
- ``cuda``: the portable paths, and the layouts proved on CUDA.

Every path is checked against the official definitions by ``tests/test_models/
test_parity.py`` on each device it runs on (``tools/device_check.sh`` on a CUDA machine).
"""
import torch
import torch.utils.checkpoint as cp

from . import cpu, cuda, portable, reference
from .switch import ENV_VAR, fast_paths, fast_paths_enabled

__all__ = [
    'ENV_VAR', 'fast_paths', 'fast_paths_enabled', 'token_mixing', 'channel_mlp',
    'group_norm', 'avg_pool', 'linear', 'conv2d', 'nhwc_op', 'checkpoint'
]

_CHANNELS_LAST_VERIFIED = {'cpu': cpu.CHANNELS_LAST_VERIFIED,
                           'cuda': cuda.CHANNELS_LAST_VERIFIED}


def _channels_last_ok(x: torch.Tensor, op: str) -> bool:
    return op in _CHANNELS_LAST_VERIFIED.get(x.device.type, ())


def _scale(layer):
    """The (C,) tensor of a ``Scale`` module, None for ``nn.Identity``."""
    return getattr(layer, 'scale', None)


# ----------------------------------------------------------------------- block operations
def token_mixing(block, x: torch.Tensor) -> torch.Tensor:
    """``res_scale1(x) + drop_path(layer_scale1(token_mixer(norm1(x))))`` of a block."""
    if fast_paths_enabled() and block.pool_mixing and not block.drop_path.active:
        norm = block.norm1
        return portable.pool_token_mixing(x, block.token_mixer.pool_size, norm.weight,
                                          norm.bias, norm.eps, _scale(block.layer_scale1),
                                          _scale(block.res_scale1),
                                          _channels_last_ok(x, 'avg_pool2d'))
    return block.token_mixing(x)


def channel_mlp(block, x: torch.Tensor) -> torch.Tensor:
    """``res_scale2(x) + drop_path(layer_scale2(mlp(norm2(x))))`` of a block."""
    if fast_paths_enabled() and x.device.type == 'cpu' and not block.drop_path.active:
        scales = _scale(block.layer_scale2), _scale(block.res_scale2)
        if not block.training and cpu.can_use_mkldnn_linear(x):
            return cpu.mlp_inference(x, block.norm2, block.mlp, *scales,
                                     exact_gelu=block.exact_gelu)
        if (block.gn1_gelu_mlp and torch.is_grad_enabled()
                and cpu.can_use_mkldnn_train_linear(x, block.mlp.fc1.weight)):
            return cpu.norm_mlp_residual(x, block.norm2, block.mlp, *scales,
                                         channels_last=_channels_last_ok(x, 'group_norm'))
    return block.channel_mlp(x)


def checkpoint(block, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` with activation checkpointing; the recomputation in the backward takes
    the same paths as the forward, wherever and whenever the backward runs."""
    if torch.compiler.is_compiling():
        return cp.checkpoint(block, x, use_reentrant=False)
    enabled = fast_paths_enabled()

    def run(t):
        with fast_paths(enabled):
            return block(t)

    return cp.checkpoint(run, x, use_reentrant=False)


# ----------------------------------------------------------------------- single ops
def nhwc_op(x: torch.Tensor, op: str, fn) -> torch.Tensor:
    """NCHW native op ``fn`` (named ``op``) applied to (B, H, W, C) x, result (B, H, W, C).

    It gets a channels-last view where x's device proved that op on it, else contiguous
    NCHW memory.
    """
    if fast_paths_enabled() and _channels_last_ok(x, op):
        return fn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
    return reference.nhwc_op(x, fn)


def avg_pool(x: torch.Tensor, pool_size: int) -> torch.Tensor:
    """Average pool of (B, H, W, C) x: stride 1, 'same' padding, padding not counted."""
    if fast_paths_enabled():
        return portable.avg_pool(x, pool_size, _channels_last_ok(x, 'avg_pool2d'))
    return reference.avg_pool(x, pool_size)


def group_norm(x: torch.Tensor, layer: torch.nn.GroupNorm) -> torch.Tensor:
    """``layer`` (an ``nn.GroupNorm``) applied to (B, H, W, C) x."""
    if fast_paths_enabled():
        if layer.num_groups == 1:
            return portable.group_norm1(x, layer.weight, layer.bias, layer.eps,
                                        _channels_last_ok(x, 'group_norm'))
        fn = reference.group_norm_nchw(layer.num_groups, layer.weight, layer.bias,
                                       layer.eps, x.dtype)
        return nhwc_op(x, 'group_norm', fn)
    return reference.group_norm(x, layer.num_groups, layer.weight, layer.bias, layer.eps)


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (..., C) x."""
    if (fast_paths_enabled() and x.device.type == 'cpu'
            and cpu.can_use_mkldnn_train_linear(x, layer.weight)):
        return cpu.fast_linear(x, layer)
    return reference.linear(x, layer)


def _low_precision_dtype(x: torch.Tensor):
    """bf16/fp16 if a CPU convolution of x would run in it (input dtype or autocast)."""
    if x.device.type != 'cpu':
        return None
    if torch.is_autocast_enabled('cpu'):
        dtype = torch.get_autocast_dtype('cpu')
        return dtype if dtype in (torch.bfloat16, torch.float16) else None
    return x.dtype if x.dtype in (torch.bfloat16, torch.float16) else None


def _conv_output_has_unit_side(conv: torch.nn.Conv2d, height: int, width: int) -> bool:
    sizes = []
    for size, k, s, p, d in zip((height, width), conv.kernel_size, conv.stride, conv.padding,
                                conv.dilation):
        sizes.append((size + 2 * p - d * (k - 1) - 1) // s + 1)
    return min(sizes) == 1


def _conv_nchw(conv: torch.nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    # Workaround (the one place for it): on CPUs with AMX-BF16 (Intel Xeon, Sapphire Rapids
    # and later), torch's oneDNN bf16 convolution is wrong when the output height or width
    # is 1: relative error 1.24 of the output scale, sometimes NaN, changing between calls
    # on the same input (issue 12, measured on torch 2.13; fp32 is right, as are bf16
    # outputs of other sizes). Such outputs are tiny (a line of pixels), so they are
    # computed in fp32 and rounded to the low-precision dtype, on every CPU.
    low = _low_precision_dtype(t)
    if low is None or not _conv_output_has_unit_side(conv, t.shape[-2], t.shape[-1]):
        return conv(t)
    bias = None if conv.bias is None else conv.bias.float()
    with torch.autocast('cpu', enabled=False):
        return conv._conv_forward(t.float(), conv.weight.float(), bias).to(low)


def conv2d(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv`` applied to (B, H, W, C) x; result (B, H', W', C') contiguous."""
    return nhwc_op(x, 'conv2d', lambda t: _conv_nchw(conv, t))
