"""Helpers for tests and benchmarks (like ``mmdet.testing``); not used by the models."""
from .official_metaformer import OfficialMetaFormer
from .official_poolformer import (
                                  OfficialPoolFormer,
                                  official_from_arch,
                                  official_imagenet_checkpoint,
                                  randomize_,
                                  to_mmpretrain_layout,
)
from .parity import (
                                  FAMILIES,
                                  INPUT_SIZES,
                                  build_official,
                                  build_ours,
                                  gradients,
                                  paired,
                                  relative_errors,
)

__all__ = [
    'OfficialMetaFormer', 'OfficialPoolFormer', 'official_from_arch',
    'official_imagenet_checkpoint', 'randomize_', 'to_mmpretrain_layout', 'FAMILIES',
    'INPUT_SIZES', 'build_official', 'build_ours', 'gradients', 'paired', 'relative_errors'
]
