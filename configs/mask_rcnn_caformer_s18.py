# CAFormer-S18 (MetaFormer baselines) in the paper's PoolFormer mask_rcnn setup. There is no
# official dense-prediction recipe for CAFormer; schedule and optimizer are PoolFormer's.
_base_ = './_base_/mask_rcnn_poolformer.py'
model = dict(
    backbone=dict(
        type='CAFormer',
        arch='s18',
        init_cfg=dict(type='Pretrained', checkpoint='https://huggingface.co/sail/dl/resolve/main/caformer/caformer_s18.pth')))
