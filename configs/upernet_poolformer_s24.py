_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        arch='s24',
        # PoolFormer-S24's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.1,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_s24.pth.tar')))
