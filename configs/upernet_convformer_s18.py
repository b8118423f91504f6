_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        type='ConvFormer',
        arch='s18',
        # ImageNet training rate: sail-sg/metaformer scripts/convformer/train_convformer_s18.sh
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/convformer/convformer_s18.pth')))
