_base_ = './_base_/mask_rcnn_poolformer.py'
model = dict(
    backbone=dict(
        arch='s12',
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar')))
