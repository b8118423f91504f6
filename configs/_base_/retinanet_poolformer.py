# RetinaNet with a PoolFormer backbone, COCO, 1x schedule (the paper's detection setup).
# Arch configs set backbone.arch and the ImageNet checkpoint.
_base_ = [
    'mmdet::_base_/models/retinanet_r50_fpn.py',
    'mmdet::_base_/datasets/coco_detection.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
    './custom_imports.py',
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        # The FPN reads strides 8-32 (the official config's start_level=1). Only those
        # stages get output norms, so no parameter lacks a gradient under DDP.
        out_indices=(1, 2, 3),
        drop_path_rate=0.,
        # Outputs as channels-last views: the neck's and head's convolutions then run
        # channels-last (faster on the CPU; docs/performance.md). Mask R-CNN keeps NCHW.
        out_channels_last=True),
    neck=dict(in_channels=[128, 320, 512], start_level=0, add_extra_convs='on_input',
              num_outs=5))
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-4, weight_decay=1e-4))
# The paper's total batch: 8 GPUs x 2 images. `--auto-scale-lr` rescales lr to yours.
auto_scale_lr = dict(enable=False, base_batch_size=16)
