_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        type='CAFormer',
        arch='m36',
        # ImageNet training rate: sail-sg/metaformer scripts/caformer/train_caformer_m36.sh
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/caformer/caformer_m36.pth')),
    decode_head=dict(in_channels=[96, 192, 384, 576]),
    auxiliary_head=dict(in_channels=384))
