from .metaformer import InputTooLargeError, MetaFormer, MetaFormerBlock, MetaFormerStage
from .metaformer_baselines import (
                                   CAFormer,
                                   ConvFormer,
                                   IdentityFormer,
                                   MetaFormerBaseline,
                                   PoolFormerV2,
                                   RandFormer,
)
from .poolformer import PoolFormer

__all__ = [
    'InputTooLargeError', 'MetaFormer', 'MetaFormerBlock', 'MetaFormerStage', 'PoolFormer',
    'MetaFormerBaseline', 'IdentityFormer', 'RandFormer', 'PoolFormerV2', 'ConvFormer',
    'CAFormer'
]
