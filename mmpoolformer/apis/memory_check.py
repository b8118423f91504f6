"""Refuse, when the model is built, a config whose token mixers cannot fit its inputs.

Attention with dropout and random mixing hold (tokens x tokens) tensors. The backbone
checks every input before its forward (``MetaFormer.check_input_size``); this runs the same
check once at build time, for the largest training input the config's pipeline can make,
so that a run that cannot fit stops before the first iteration.
"""
from typing import Optional, Tuple

from ..models.backbones.metaformer import InputTooLargeError, MetaFormer
from .data_check import walk_dataset_cfgs
from .model_check import ModelConfigError


def _pipeline_size(pipeline) -> Optional[Tuple[int, int]]:
    """(short side, long side) of the largest image a training pipeline produces."""
    size = None
    for t in pipeline or []:
        kind = str(t.get('type', '')).split('.')[-1]
        if kind in ('Resize', 'RandomResize', 'RandomChoiceResize'):
            scales = t.get('scale') or t.get('scales')
            if scales is None:
                continue
            if isinstance(scales[0], (int, float)):
                scales = [scales]
            ratio = max(t.get('ratio_range') or (1.0, 1.0))
            size = max((tuple(sorted(int(round(v * ratio)) for v in s)) for s in scales),
                       key=lambda s: s[0] * s[1])
        elif kind in ('RandomCrop', 'FixedShapeResize') and size is not None:
            crop = t.get('crop_size') or (t.get('height'), t.get('width'))
            if crop and all(crop):
                size = tuple(sorted((min(size[0], crop[0]), min(size[1], crop[1]))))
    return size


def largest_training_input(cfg) -> Optional[Tuple[int, int, int]]:
    """(batch, height, width) of the largest training batch, or None if unknown."""
    loader = cfg.get('train_dataloader') or {}
    sizes = [s for d in walk_dataset_cfgs(loader.get('dataset'))
             if (s := _pipeline_size(d.get('pipeline'))) is not None]
    if not sizes:
        return None
    short, long = max(sizes, key=lambda s: s[0] * s[1])
    # The data preprocessor pads to a multiple of its size divisor (32 in mmdet's configs).
    preprocessor = cfg.model.get('data_preprocessor') or {}
    divisor = preprocessor.get('pad_size_divisor') or preprocessor.get('size_divisor') or 1
    short, long = (-(-v // divisor) * divisor for v in (short, long))
    return loader.get('batch_size', 1), short, long


def check_input_memory(cfg, model, device='cpu'):
    """Raise ModelConfigError if the backbone's quadratic mixers cannot fit the inputs."""
    backbone = getattr(getattr(model, 'module', model), 'backbone', None)
    if not isinstance(backbone, MetaFormer):
        return
    found = largest_training_input(cfg)
    if found is None:
        return
    batch, height, width = found
    try:
        backbone.check_input_size(batch, height, width, training=True, device=device)
    except InputTooLargeError as e:
        raise ModelConfigError(f'{e} (checked at build time for the largest training '
                               f'batch of this config)') from None
