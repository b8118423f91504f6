from . import fused_ops
from .mlp import Mlp
from .norm import BatchNormNHWC, GroupNormNHWC, SyncBatchNormNHWC, build_norm, is_group_norm1
from .scale import Scale
from .token_mixers import TOKEN_MIXERS, IdentityMixer, Pooling, build_token_mixer

__all__ = [
    'fused_ops', 'Mlp', 'BatchNormNHWC', 'GroupNormNHWC', 'SyncBatchNormNHWC', 'build_norm',
    'is_group_norm1', 'Scale', 'TOKEN_MIXERS', 'IdentityMixer', 'Pooling', 'build_token_mixer'
]
