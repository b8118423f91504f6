_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        type='ConvFormer',
        arch='b36',
        # ImageNet training rate: sail-sg/metaformer scripts/convformer/train_convformer_b36.sh
        drop_path_rate=0.6,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/convformer/convformer_b36.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 768]),
    auxiliary_head=dict(in_channels=512))
