import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

import mmpoolformer  # noqa: F401
from mmpoolformer.apis import ModelConfigError, check_neck_channels


def build(cfg):
    from mmdet.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        return MODELS.build(cfg.model)


def test_neck_channel_mismatch_is_reported_at_build_time():
    cfg = Config.fromfile('configs/retinanet_poolformer_s12.py')
    cfg.model.backbone.init_cfg = None
    check_neck_channels(build(cfg))  # the shipped config is consistent
    cfg.model.neck.in_channels = [64, 128, 320]
    with pytest.raises(ModelConfigError, match=r'FPN in_channels \[64, 128, 320\] disagree '
                                               r'with .* PoolFormer s12 .*\(1, 2, 3\)\): '
                                               r'\[128, 320, 512\]'):
        check_neck_channels(build(cfg))


def test_cpu_distributed_runs_build_batchnorm_instead_of_syncbn():
    from mmpoolformer.apis.launch import _sync_bn_to_bn
    cfg = Config.fromfile('configs/semantic_fpn_poolformer_s12.py')
    assert cfg.model.decode_head.norm_cfg.type == 'SyncBN'
    _sync_bn_to_bn(cfg.model)
    assert 'SyncBN' not in str(cfg.model)
    assert cfg.model.decode_head.norm_cfg == dict(type='BN', requires_grad=True)
