from .metaformer import MetaFormer, MetaFormerBlock, MetaFormerStage
from .poolformer import PoolFormer

__all__ = ['MetaFormer', 'MetaFormerBlock', 'MetaFormerStage', 'PoolFormer']
