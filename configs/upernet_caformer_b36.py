_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        type='CAFormer',
        arch='b36',
        # ImageNet training rate: sail-sg/metaformer scripts/caformer/train_caformer_b36.sh
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/caformer/caformer_b36.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
