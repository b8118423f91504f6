_base_ = './_base_/mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        arch='s24',
        # PoolFormer-S24's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.95 ** 7 = 0.6983. Over this
# arch's 24 blocks the same stem factor and the same full lr at the top take
# 0.95 ** (7 / (24 + 1)) = 0.9857 per block: 0.986 (0.986 ** 25 = 0.7029).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.986))
