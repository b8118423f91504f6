_base_ = './_base_/cascade_mask_rcnn_3x_metaformer.py'
model = dict(
    backbone=dict(
        type='ConvFormer',
        arch='s18',
        # ImageNet training rate: sail-sg/metaformer scripts/convformer/train_convformer_s18.sh
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth')))
# ConvNeXt-T's recipe gives its stem the lr factor 0.7 ** 7 = 0.0824. Over this
# arch's 18 blocks the same stem factor and the same full lr at the top take
# 0.7 ** (7 / (18 + 1)) = 0.8769 per block: 0.877 (0.877 ** 19 = 0.0826).
optim_wrapper = dict(paramwise_cfg=dict(decay_rate=0.877))
