"""Configs whose token mixers cannot fit their inputs are refused when the model is built."""
import importlib
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpoolformer.apis.memory_check import check_input_memory, largest_training_input
from mmpoolformer.apis.model_check import ModelConfigError

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def config(name):
    return Config.fromfile(osp.join(REPO, 'configs', name))


def build(cfg):
    registry = importlib.import_module(f'{cfg.default_scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        return registry.build(cfg.model)


def test_largest_training_input_follows_the_pipeline():
    # RetinaNet: resize to 1333x800 (keep ratio), padded to multiples of 32.
    assert largest_training_input(config('retinanet_caformer_s18.py')) == (2, 800, 1344)
    # Semantic FPN: random resize up to 2x of 2048x512, then a 512x512 crop.
    assert largest_training_input(config('semantic_fpn_caformer_s18.py')) == (4, 512, 512)


def test_the_paper_configs_fit():
    for name in ('retinanet_caformer_s18.py', 'mask_rcnn_poolformer_hybrid_s12.py'):
        cfg = config(name)
        cfg.model.backbone.init_cfg = None
        check_input_memory(cfg, build(cfg))  # attention at strides 16/32 only: fits


def test_attention_with_dropout_at_stride_4_is_refused_at_build_time():
    cfg = config('retinanet_caformer_s18.py')
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.token_mixers = [dict(type='Attention', attn_drop=0.1)] * 4
    with pytest.raises(ModelConfigError, match=r'batch of 2 at 800x1344 needs [\d.]+ GiB .*'
                       r'stage 0 \(Attention, 67,200 tokens\).*checked at build time'):
        check_input_memory(cfg, build(cfg))
