"""Normalization layers for (B, H, W, C) tensors, the layout used inside MetaFormer stages.

They subclass the torch layers they stand for, so parameter names, initialisation and
``isinstance`` checks (e.g. ``norm_eval`` looking for ``_BatchNorm``) are unchanged.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import NORM_LAYERS, lookup
from .. import kernels


def affine_input(x: torch.Tensor, weight) -> torch.Tensor:
    """x in the dtype that the norm's affine gives its output: PyTorch's type promotion of
    x and the weight, as in the official MetaFormer norms (normalised x times the weight).
    Under autocast a bf16 x (a convolution's output) and an fp32 weight give fp32: the
    residual stream that follows stays fp32 there, as in the official models."""
    if weight is None or weight.dtype == x.dtype:
        return x
    return x.to(torch.promote_types(x.dtype, weight.dtype))


class GroupNormNHWC(nn.GroupNorm):
    """``nn.GroupNorm`` (same parameters and eps) applied to (B, H, W, C) input; output in
    ``affine_input``'s dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.group_norm(affine_input(x, self.weight), self)


class LayerNormNHWC(nn.LayerNorm):
    """``nn.LayerNorm`` over the channel axis of (B, H, W, C) input; output in
    ``affine_input``'s dtype."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = affine_input(x, self.weight)
        if self.bias is None and self.weight is not None and torch.onnx.is_in_onnx_export():
            # onnxruntime (1.19 to at least 1.32) crashes, a segmentation fault in its
            # extended graph optimizations, on a LayerNormalization node without its
            # optional bias input, which torch 2.1's exporter writes for a bias-free
            # LayerNorm (onnxruntime issue 18967, PyTorch issue 116574; newer exporters
            # write a zero bias). So the export gets the zero bias, as newer torch writes.
            return F.layer_norm(x, self.normalized_shape, self.weight,
                                torch.zeros_like(self.weight), self.eps)
        return super().forward(x)


class BatchNormNHWC(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` on (B, H, W, C) input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.nhwc_op(x, 'batch_norm', super().forward)


class SyncBatchNormNHWC(nn.SyncBatchNorm):
    """``nn.SyncBatchNorm`` on (B, H, W, C) input."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.nhwc_op(x, 'batch_norm', super().forward)


@NORM_LAYERS.register_module(name='LN')
def _layer_norm(channels, eps=1e-5, affine=True, bias=True):
    return LayerNormNHWC(channels, eps=eps, elementwise_affine=affine, bias=bias)


@NORM_LAYERS.register_module(name='GN')
def _group_norm(channels, num_groups=None, eps=1e-5, affine=True, bias=True):
    if num_groups is None:
        raise ValueError("norm_cfg of type 'GN' needs num_groups, e.g. "
                         "dict(type='GN', num_groups=1) as in PoolFormer")
    if channels % num_groups:
        raise ValueError(f'GN num_groups={num_groups} does not divide {channels} channels')
    layer = GroupNormNHWC(num_groups, channels, eps=eps, affine=affine)
    if affine and not bias:
        # The MetaFormer baselines' "modified LayerNorm": one group, weight but no bias.
        layer.register_parameter('bias', None)
    return layer


@NORM_LAYERS.register_module(name='BN')
def _batch_norm(channels, **kwargs):
    return BatchNormNHWC(channels, **kwargs)


@NORM_LAYERS.register_module(name='SyncBN')
def _sync_batch_norm(channels, **kwargs):
    return SyncBatchNormNHWC(channels, **kwargs)


def build_norm(cfg: dict, channels: int) -> nn.Module:
    """Build a norm layer for (B, H, W, C) tensors from an mmcv-style ``norm_cfg``.

    The type is looked up in ``mmpoolformer.registry.NORM_LAYERS`` (a class or function
    called with ``channels`` and the other keys); ``requires_grad`` is honoured as in mmcv.
    """
    if isinstance(cfg, dict):
        cfg = dict(cfg)
        requires_grad = cfg.pop('requires_grad', True)
    make, kwargs = lookup(NORM_LAYERS, cfg, 'norm type')
    try:
        layer = make(channels, **kwargs)
    except TypeError as e:
        raise TypeError(f'bad norm_cfg {dict(cfg)}: {e}') from None
    for p in layer.parameters():
        p.requires_grad_(requires_grad)
    return layer


def is_group_norm1(layer: nn.Module) -> bool:
    """True for a one-group GroupNorm: per-sample statistics, per-channel affine."""
    return isinstance(layer, GroupNormNHWC) and layer.num_groups == 1
