_base_ = './_base_/mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        arch='s36',
        # PoolFormer-S36's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s36.pth.tar')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.95 ** 7 = 0.6983. Over this
# arch's 36 blocks the same stem factor and the same full lr at the top take
# 0.95 ** (7 / (36 + 1)) = 0.9903 per block: 0.99 (0.99 ** 37 = 0.6894).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.99))
