"""Activations of the MetaFormer baselines, and the builder the blocks use.

``build_act`` builds the types of ``mmpoolformer.registry.ACTIVATIONS`` (StarReLU,
SquaredReLU and any a user registers) and hands every other type (GELU, ReLU, ...) to
mmcv's ``build_activation_layer``, so mmcv-style ``act_cfg`` keep working.
"""
import torch
import torch.nn as nn
from mmcv.cnn import build_activation_layer

from ...registry import ACTIVATIONS, lookup


@ACTIVATIONS.register_module()
class StarReLU(nn.Module):
    """``scale * relu(x) ** 2 + bias`` with a learnable scalar scale and bias.

    The MetaFormer-baselines definition: both are (1,)-shaped parameters (checkpoint keys
    ``...act.scale`` / ``...act.bias``), initialised to 1 and 0.
    """

    def __init__(self, scale_value: float = 1.0, bias_value: float = 0.0,
                 scale_learnable: bool = True, bias_learnable: bool = True):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), float(scale_value)),
                                  requires_grad=scale_learnable)
        self.bias = nn.Parameter(torch.full((1,), float(bias_value)),
                                 requires_grad=bias_learnable)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Dtypes as in the official definition: under autocast, relu(x) ** 2 is bf16 and
        # the fp32 scale and bias make the result fp32 (the next layer casts it back); the
        # gradients of the two scalars sum the whole map in fp32.
        return torch.addcmul(self.bias, torch.relu(x).square(), self.scale)


@ACTIVATIONS.register_module()
class SquaredReLU(nn.Module):
    """``relu(x) ** 2`` (used by the baselines' classification head)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.square(torch.relu(x))


def build_act(cfg: dict) -> nn.Module:
    """Build an activation from ``dict(type=NAME, **kwargs)``: NAME from
    ``mmpoolformer.registry.ACTIVATIONS``, else from mmcv's (GELU, ReLU, ...)."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'act_cfg must be a dict with a "type" key, got {cfg!r}')
    if cfg['type'] not in ACTIVATIONS.module_dict:
        return build_activation_layer(cfg)
    cls, kwargs = lookup(ACTIVATIONS, cfg, 'activation')
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise TypeError(f'bad act_cfg {dict(cfg)}: {e}') from None
