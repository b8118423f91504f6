_base_ = './_base_/upernet_metaformer.py'
model = dict(
    backbone=dict(
        arch='m48',
        # PoolFormer-M48's ImageNet training rate (sail-sg/poolformer README).
        drop_path_rate=0.4,
        init_cfg=dict(type='Pretrained', checkpoint='https://github.com/sail-sg/poolformer/releases/download/v1.0/poolformer_m48.pth.tar')),
    decode_head=dict(in_channels=[96, 192, 384, 768]),
    auxiliary_head=dict(in_channels=384))
