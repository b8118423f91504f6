from ...registry import ACTIVATIONS, NORM_LAYERS, TOKEN_MIXERS
from .activations import SquaredReLU, StarReLU, build_act
from .drop_path import DropPath
from .mlp import Mlp
from .norm import BatchNormNHWC, GroupNormNHWC, SyncBatchNormNHWC, build_norm, is_group_norm1
from .scale import Scale
from .token_mixers import (
                           Attention,
                           DWConv,
                           IdentityMixer,
                           Pooling,
                           RandomMixing,
                           SepConv,
                           build_token_mixer,
)

__all__ = [
    'ACTIVATIONS', 'NORM_LAYERS', 'SquaredReLU', 'StarReLU', 'build_act', 'DropPath', 'Mlp',
    'BatchNormNHWC', 'GroupNormNHWC', 'SyncBatchNormNHWC', 'build_norm', 'is_group_norm1',
    'Scale', 'TOKEN_MIXERS', 'Attention', 'DWConv', 'IdentityMixer', 'Pooling',
    'RandomMixing', 'SepConv', 'build_token_mixer'
]
