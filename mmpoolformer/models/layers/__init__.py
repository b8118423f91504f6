from . import fused_ops
from .activations import ACTIVATIONS, SquaredReLU, StarReLU, build_act
from .mlp import Mlp
from .norm import BatchNormNHWC, GroupNormNHWC, SyncBatchNormNHWC, build_norm, is_group_norm1
from .scale import Scale
from .token_mixers import (
                           TOKEN_MIXERS,
                           Attention,
                           DWConv,
                           IdentityMixer,
                           Pooling,
                           RandomMixing,
                           SepConv,
                           build_token_mixer,
)

__all__ = [
    'fused_ops', 'ACTIVATIONS', 'SquaredReLU', 'StarReLU', 'build_act', 'Mlp',
    'BatchNormNHWC', 'GroupNormNHWC', 'SyncBatchNormNHWC', 'build_norm', 'is_group_norm1',
    'Scale', 'TOKEN_MIXERS', 'Attention', 'DWConv', 'IdentityMixer', 'Pooling',
    'RandomMixing', 'SepConv', 'build_token_mixer'
]
