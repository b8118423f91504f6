_base_ = './_base_/cascade_mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        arch='s12',
        # PoolFormer-S12's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s12.pth.tar')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.7 ** 7 = 0.0824. Over this
# arch's 12 blocks the same stem factor and the same full lr at the top take
# 0.7 ** (7 / (12 + 1)) = 0.8253 per block: 0.825 (0.825 ** 13 = 0.0820).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.825))
