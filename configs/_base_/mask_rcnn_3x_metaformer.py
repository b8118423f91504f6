# Mask R-CNN with a MetaFormer backbone, COCO, 3x multi-scale + crop: the protocol of mmdet's
# ConvNeXt-T Mask R-CNN (lr 1e-4). Arch configs set the backbone (type, arch,
# drop_path_rate, ImageNet checkpoint), the neck's in_channels where they differ, and the
# lr-decay rate. docs/protocols.md has the sources and the reasons.
_base_ = [
    'mmdet::_base_/models/mask-rcnn_r50_fpn.py',
    './coco_instance_ms_crop_3x.py',
    './custom_imports.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 320, 512]))
optim_wrapper = dict(optimizer=dict(lr=1e-4))
