_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        arch='s36',
        # PoolFormer-S36's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.2,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s36.pth.tar')))
