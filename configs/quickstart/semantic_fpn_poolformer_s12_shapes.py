# configs/semantic_fpn_poolformer_s12.py on the synthetic shapes dataset, CPU-sized.
# Changed: data paths, image scale, class count and schedule; backbone from scratch
# (offline machine; drop `init_cfg=None` to start from ImageNet weights).
# The data keep ADE20K's layout and label convention (0 = unlabelled, reduced away), but
# mmseg's ADE20KDataset only accepts ADE's 150 class names, so the generic BaseSegDataset
# reads them with ADE20KDataset's settings and our four class names.
_base_ = '../semantic_fpn_poolformer_s12.py'

data_root = 'data/shapes/ade/ADEChallengeData2016'
metainfo = dict(
    classes=('background', 'circle', 'square', 'triangle'),
    palette=[[60, 60, 60], [220, 20, 60], [0, 130, 230], [250, 170, 30]])
dataset = dict(
    type='BaseSegDataset', data_root=data_root, metainfo=metainfo, img_suffix='.jpg',
    seg_map_suffix='.png', reduce_zero_label=True)
crop_size = (256, 256)
max_iters = 400

model = dict(
    backbone=dict(init_cfg=None),
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=4))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=(512, 256), ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(512, 256), keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
train_dataloader = dict(
    batch_size=8,
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=train_pipeline))
val_dataloader = dict(
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **dataset,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
optim_wrapper = dict(optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=50, end=max_iters)
]
default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=2))
auto_scale_lr = dict(base_batch_size=8)
