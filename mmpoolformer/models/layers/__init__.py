from .activations import ACTIVATIONS, SquaredReLU, StarReLU, build_act
from .drop_path import DropPath
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
    'ACTIVATIONS', 'SquaredReLU', 'StarReLU', 'build_act', 'DropPath', 'Mlp',
    'BatchNormNHWC', 'GroupNormNHWC', 'SyncBatchNormNHWC', 'build_norm', 'is_group_norm1',
    'Scale', 'TOKEN_MIXERS', 'Attention', 'DWConv', 'IdentityMixer', 'Pooling',
    'RandomMixing', 'SepConv', 'build_token_mixer'
]
