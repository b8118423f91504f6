_base_ = './_base_/mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        arch='s12',
        # PoolFormer-S12's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.95 ** 7 = 0.6983. Over this
# arch's 12 blocks the same stem factor and the same full lr at the top take
# 0.95 ** (7 / (12 + 1)) = 0.9728 per block: 0.973 (0.973 ** 13 = 0.7006).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.973))
