# Semantic FPN with a PoolFormer backbone, ADE20K, 40k iterations (the paper's setup).
# Arch configs set backbone.arch and the ImageNet checkpoint (and the neck's channels
# for the M models).
_base_ = [
    'mmseg::_base_/models/fpn_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_40k.py',
    'mmseg::_base_/default_runtime.py',
    './custom_imports.py',
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        out_indices=(0, 1, 2, 3),
        drop_path_rate=0.,
        # Outputs as channels-last views: the neck's and head's convolutions then run
        # channels-last (faster on the CPU; docs/performance.md). Mask R-CNN keeps NCHW.
        out_channels_last=True),
    neck=dict(in_channels=[64, 128, 320, 512], out_channels=256, num_outs=4),
    decode_head=dict(num_classes=150, channels=128, dropout_ratio=0.1))
# As the official code: after the keep-ratio resize to 2048x512, resize so that both sides
# are multiples of 32 (skipping it costs about 0.4 mIoU).
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(2048, 512), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
# 8 GPUs x 4 images = the paper's batch of 32.
train_dataloader = dict(batch_size=4)
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-4, weight_decay=1e-4))
param_scheduler = [
    dict(type='PolyLR', power=0.9, eta_min=0.0, begin=0, end=40000, by_epoch=False)
]
auto_scale_lr = dict(enable=False, base_batch_size=32)
