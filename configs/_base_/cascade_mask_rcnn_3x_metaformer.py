# Cascade Mask R-CNN with a MetaFormer backbone, COCO, 3x multi-scale + crop: the protocol of
# mmdet's ConvNeXt-T Cascade Mask R-CNN (lr 2e-4; each of the three stages' box heads with
# 4 shared convs and 1 fc, SyncBN, GIoU loss on decoded boxes). Arch configs set the
# backbone (type, arch, drop_path_rate, ImageNet checkpoint), the neck's in_channels where
# they differ, and the lr-decay rate. docs/protocols.md has the sources and the reasons.
_base_ = [
    'mmdet::_base_/models/cascade-mask-rcnn_r50_fpn.py',
    './coco_instance_ms_crop_3x.py',
    './custom_imports.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        out_indices=(0, 1, 2, 3)),
    neck=dict(in_channels=[64, 128, 320, 512]),
    roi_head=dict(bbox_head=[
        dict(
            type='ConvFCBBoxHead',
            num_shared_convs=4,
            num_shared_fcs=1,
            in_channels=256,
            conv_out_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=80,
            bbox_coder=dict(type='DeltaXYWHBBoxCoder', target_means=[0., 0., 0., 0.],
                            target_stds=stds),
            reg_class_agnostic=False,
            reg_decoded_bbox=True,
            norm_cfg=dict(type='SyncBN', requires_grad=True),
            loss_cls=dict(type='CrossEntropyLoss', use_sigmoid=False, loss_weight=1.0),
            loss_bbox=dict(type='GIoULoss', loss_weight=10.0))
        # The cascade's stages regress ever finer: their box-delta stds shrink.
        for stds in ([0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1],
                     [0.033, 0.033, 0.067, 0.067])
    ]))
optim_wrapper = dict(optimizer=dict(lr=2e-4))
