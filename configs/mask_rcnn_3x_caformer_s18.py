_base_ = './_base_/mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        type='CAFormer',
        arch='s18',
        # ImageNet training rate: sail-sg/metaformer scripts/caformer/train_caformer_s18.sh
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.95 ** 7 = 0.6983. Over this
# arch's 18 blocks the same stem factor and the same full lr at the top take
# 0.95 ** (7 / (18 + 1)) = 0.9813 per block: 0.981 (0.981 ** 19 = 0.6946).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.981))
