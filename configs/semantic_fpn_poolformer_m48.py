_base_ = './_base_/semantic_fpn_poolformer.py'
model = dict(
    backbone=dict(
        arch='m48',
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar')),
    neck=dict(in_channels=[96, 192, 384, 768]))
