# What the segmentation quickstarts share: the synthetic shapes data in ADE20K's layout
# (python tools/dataset_converters/make_shapes.py data/shapes --tasks seg), whole images at
# 192 px and a CPU-sized schedule of 2000 iterations of batch 4.
# Only uniquely named variables: a config may not get the same key from two bases, so the
# quickstart configs, which also inherit a real config, pick these up as {{_base_.name}}.
# The data keep ADE20K's layout and label convention (0 = unlabelled, reduced away), but
# mmseg's ADE20KDataset only accepts ADE's 150 class names, so the generic BaseSegDataset
# reads them with ADE20KDataset's settings and our four class names.
_dataset = dict(
    type='BaseSegDataset',
    data_root='data/shapes/ade/ADEChallengeData2016',
    metainfo=dict(
        classes=('background', 'circle', 'square', 'triangle'),
        palette=[[60, 60, 60], [220, 20, 60], [0, 130, 230], [250, 170, 30]]),
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
shapes_crop_size = (192, 192)
# The 256 px images at 192 px (the detection quickstart's scale, objects 21-72 px), rescaled
# by 0.75-1.25 and cropped back to 192 px where larger: a shape is rarely cut, so its
# corners, which tell a square from a circle, stay in view. Every flip keeps each shape's
# class. No photometric distortion: colour says nothing about the class here.
shapes_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='RandomResize', scale=shapes_crop_size, ratio_range=(0.75, 1.25),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=shapes_crop_size, cat_max_ratio=1.0),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
    dict(type='PackSegInputs')
]
shapes_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=shapes_crop_size, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')
]
shapes_train_dataloader = dict(
    batch_size=4,
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **_dataset,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=shapes_train_pipeline))
shapes_val_dataloader = dict(
    batch_size=1,
    num_workers=1,
    dataset=dict(
        _delete_=True,
        **_dataset,
        data_prefix=dict(img_path='images/validation',
                         seg_map_path='annotations/validation'),
        pipeline=shapes_test_pipeline))

_iters = 2000
shapes_train_cfg = dict(max_iters=_iters, val_interval=_iters)
shapes_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='PolyLR', power=0.9, eta_min=0.0, by_epoch=False, begin=50, end=_iters)
]
shapes_default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=_iters, max_keep_ckpts=2))
