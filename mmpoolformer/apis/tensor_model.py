"""A config's detector or segmentor as a tensor-in, tensors-out model (mmdet/mmseg
``mode='tensor'``): what the FLOP counter traces and the ONNX exporter exports."""
import importlib
import warnings

import torch

SCOPES = ('mmdet', 'mmseg')


def config_scope(cfg) -> str:
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in SCOPES:
        raise ValueError(f'default_scope {scope!r}: mmdet or mmseg configs only')
    return scope


def build_model(cfg, checkpoint=None):
    """The config's model in eval mode: seeded random weights, or ``checkpoint``'s."""
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import DefaultScope
    scope = config_scope(cfg)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope(scope), warnings.catch_warnings():
        # mmseg's loss builders warn about their own deprecations on every build.
        warnings.simplefilter('ignore', UserWarning)
        model = registry.build(cfg.model)
    if getattr(model, 'auxiliary_head', None) is not None:
        model.auxiliary_head = None  # training only (mmseg's get_flops drops it too)
    if checkpoint is not None:
        from mmengine.runner import load_checkpoint
        load_checkpoint(model, checkpoint, map_location='cpu', strict=False,
                        logger='silent')
    return revert_sync_batchnorm(model).eval()


def dummy_batch(model, scope: str, shape, seed: int = 0):
    """One random image of (H, W) = shape through the model's data preprocessor:
    (normalised, padded inputs, data samples)."""
    h, w = shape
    meta = dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w), scale_factor=(1., 1.))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample as Sample
    else:
        from mmseg.structures import SegDataSample as Sample
    gen = torch.Generator().manual_seed(seed)
    image = torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen)
    data = model.data_preprocessor(
        dict(inputs=[image], data_samples=[Sample(metainfo=meta)]), False)
    return data['inputs'], data['data_samples']
