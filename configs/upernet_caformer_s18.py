_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        type='CAFormer',
        arch='s18',
        # ImageNet training rate: sail-sg/metaformer scripts/caformer/train_caformer_s18.sh
        drop_path_rate=0.15,
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth')))
