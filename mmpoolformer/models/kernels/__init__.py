"""The kernels layer: every fast path of the models, in one place, behind one switch.

The model code (``layers``, ``backbones``) states the math with plain modules and calls
this layer for the operations that have faster forms. Each call picks, by the switch
(``fast_paths``, ``MMPOOLFORMER_FAST_PATHS``) and the tensor's device:

- ``reference``: plain PyTorch on documented layouts (the switch off; tracing and export;
  torch.compile on CUDA; devices without a backend);
- ``portable``: fast paths with one formulation on every device (pooling and one-group
  norm with layout-free backwards, PoolFormer's token mixing as one ``lerp``);
- ``cpu``: oneDNN GEMMs and the fused channel MLP;
- ``cuda``: the portable paths, and the layouts proved on CUDA.

Every path is checked against the official definitions by ``tests/test_models/
test_parity.py`` on each device it runs on (``tools/device_check.sh`` on a CUDA machine).
"""
import torch
import torch.utils.checkpoint as cp

from ... import compat
from . import cpu, cuda, portable, reference
from .switch import ENV_VAR, fast_paths, fast_paths_enabled, switch_on

__all__ = [
    'ENV_VAR', 'fast_paths', 'fast_paths_enabled', 'compiles_inference', 'token_mixing',
    'channel_mlp', 'group_norm', 'avg_pool', 'linear', 'conv2d', 'nhwc_op', 'checkpoint'
]

_CHANNELS_LAST_VERIFIED = {'cpu': cpu.CHANNELS_LAST_VERIFIED,
                           'cuda': cuda.CHANNELS_LAST_VERIFIED}
# Under torch.compile, per device: the fast paths (custom operators that Dynamo keeps in its
# graph) or the reference ops (which Inductor fuses into kernels of its own).
COMPILED_FAST_PATHS = {'cpu': cpu.COMPILE_WITH_FAST_PATHS,
                       'cuda': cuda.COMPILE_WITH_FAST_PATHS}
# Per device: whether a backbone's ``compile`` switch compiles inference (no autograd) too,
# where the fast paths are on; else inference runs them eagerly (``compiles_inference``).
COMPILED_INFERENCE = {'cpu': cpu.COMPILE_INFERENCE, 'cuda': cuda.COMPILE_INFERENCE}


def compiles_inference(x: torch.Tensor) -> bool:
    """Whether compiled blocks also run for inference on x's device (the backbones'
    ``compile`` switch): not where they would only wrap the eager fast paths (the CPU)."""
    return COMPILED_INFERENCE.get(x.device.type, True) or not fast_paths_enabled()


def _fast(x: torch.Tensor) -> bool:
    """Whether the operations on x take their fast paths now (else the reference ops)."""
    if compat.is_compiling():
        # torch.export (and the ONNX exporter built on it) sees the reference ops, as does
        # torch.compile on a torch without custom operators.
        return (compat.custom_ops_in_graph() and switch_on()
                and COMPILED_FAST_PATHS.get(x.device.type, False))
    return fast_paths_enabled()


def _channels_last_ok(x: torch.Tensor, op: str) -> bool:
    return op in _CHANNELS_LAST_VERIFIED.get(x.device.type, ())


def _scale(layer):
    """The (C,) tensor of a ``Scale`` module, None for ``nn.Identity``."""
    return getattr(layer, 'scale', None)


# ----------------------------------------------------------------------- block operations
def token_mixing(block, x: torch.Tensor) -> torch.Tensor:
    """``res_scale1(x) + drop_path(layer_scale1(token_mixer(norm1(x))))`` of a block."""
    if _fast(x) and block.pool_mixing and not block.drop_path.active:
        norm = block.norm1
        return portable.pool_token_mixing(x, block.token_mixer.pool_size, norm.weight,
                                          norm.bias, norm.eps, _scale(block.layer_scale1),
                                          _scale(block.res_scale1),
                                          _channels_last_ok(x, 'avg_pool2d'))
    return block.token_mixing(x)


def channel_mlp(block, x: torch.Tensor) -> torch.Tensor:
    """``res_scale2(x) + drop_path(layer_scale2(mlp(norm2(x))))`` of a block."""
    if _fast(x) and x.device.type == 'cpu' and not block.drop_path.active:
        scales = _scale(block.layer_scale2), _scale(block.res_scale2)
        # (under torch.compile only the exact-GELU inference MLP is one operator)
        if (not block.training and cpu.can_use_mkldnn_linear(x)
                and (block.exact_gelu or not compat.is_compiling())):
            return cpu.mlp_inference(x, block.norm2, block.mlp, *scales,
                                     exact_gelu=block.exact_gelu)
        if (block.gn1_gelu_mlp and torch.is_grad_enabled()
                and cpu.can_fuse_mlp(x, block.mlp.fc1.weight)):
            return cpu.norm_mlp_residual(x, block.norm2, block.mlp, *scales,
                                         channels_last=_channels_last_ok(x, 'group_norm'))
    return block.channel_mlp(x)


def checkpoint(block, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` with activation checkpointing; the recomputation in the backward takes
    the same paths as the forward, wherever and whenever the backward runs."""
    if compat.is_compiling():
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
    if _fast(x) and _channels_last_ok(x, op):
        return fn(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1).contiguous()
    return reference.nhwc_op(x, fn)


def avg_pool(x: torch.Tensor, pool_size: int) -> torch.Tensor:
    """Average pool of (B, H, W, C) x: stride 1, 'same' padding, padding not counted."""
    if _fast(x):
        return portable.avg_pool(x, pool_size, _channels_last_ok(x, 'avg_pool2d'))
    return reference.avg_pool(x, pool_size)


def group_norm(x: torch.Tensor, layer: torch.nn.GroupNorm) -> torch.Tensor:
    """``layer`` (an ``nn.GroupNorm``) applied to (B, H, W, C) x."""
    if _fast(x):
        if layer.num_groups == 1:
            return portable.group_norm1(x, layer.weight, layer.bias, layer.eps,
                                        _channels_last_ok(x, 'group_norm'))
        fn = reference.group_norm_nchw(layer.num_groups, layer.weight, layer.bias,
                                       layer.eps, x.dtype)
        return nhwc_op(x, 'group_norm', fn)
    return reference.group_norm(x, layer.num_groups, layer.weight, layer.bias, layer.eps)


def linear(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    """``layer(x)`` for (..., C) x."""
    if (_fast(x) and x.device.type == 'cpu'
            and cpu.can_use_mkldnn_train_linear(x, layer.weight)):
        return cpu.fast_linear(x, layer)
    return reference.linear(x, layer)


def conv2d(x: torch.Tensor, conv: torch.nn.Conv2d) -> torch.Tensor:
    """``conv`` applied to (B, H, W, C) x; result (B, H', W', C') contiguous.

    With the fast paths, and always under torch.compile, it is one custom operator (which
    reads a channels-last view where the device proved it): Inductor only calls an
    external convolution kernel anyway, and with symbolic sizes torch 2.13 specializes the
    height and width of a convolution's backward (so every new input size recompiled) or
    fails on its saved channels-last input (PyTorch issue 185510).
    """
    if _fast(x) or compat.custom_ops_in_graph():
        return portable.conv2d_nhwc(x, conv, _channels_last_ok(x, 'conv2d'))
    return reference.nhwc_op(x, lambda t: _conv_reference(conv, t))


def _conv_reference(conv: torch.nn.Conv2d, t: torch.Tensor) -> torch.Tensor:
    """``conv(t)`` for NCHW t, with the unit-side workaround of ``portable.conv2d_nhwc``."""
    low = portable.compute_dtype(t)
    if not portable.unit_side_in_fp32(t.device.type, low, t.shape[2:], conv.kernel_size,
                                      conv.stride, conv.padding, conv.dilation):
        return conv(t)
    bias = None if conv.bias is None else conv.bias.float()
    with torch.autocast(t.device.type, enabled=False):
        return conv._conv_forward(t.float(), conv.weight.float(), bias).to(low)
