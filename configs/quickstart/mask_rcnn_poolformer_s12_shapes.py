# configs/mask_rcnn_poolformer_s12.py on the synthetic shapes dataset, CPU-sized.
# Changed: data paths, image scale, class count and schedule (configs/quickstart/_base_/);
# backbone from scratch (offline machine; drop `init_cfg=None` for ImageNet weights).
_base_ = ['../mask_rcnn_poolformer_s12.py', './_base_/shapes_detection.py']

model = dict(
    backbone=dict(init_cfg=None),
    roi_head=dict(bbox_head=dict(num_classes=3), mask_head=dict(num_classes=3)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale={{_base_.shapes_scale}}, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale={{_base_.shapes_scale}}, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'))
]
train_dataloader = dict(
    batch_size={{_base_.shapes_batch_size}},
    num_workers=1,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(data_root={{_base_.shapes_data_root}},
                 metainfo={{_base_.shapes_metainfo}}, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size={{_base_.shapes_batch_size}},
    num_workers=1,
    dataset=dict(data_root={{_base_.shapes_data_root}},
                 metainfo={{_base_.shapes_metainfo}}, pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = [
    dict(type='CocoMetric', ann_file={{_base_.shapes_val_ann}}, metric=['bbox', 'segm'],
         format_only=False),
    {{_base_.shapes_drawn_metric}}
]
test_evaluator = val_evaluator

train_cfg = {{_base_.shapes_train_cfg}}
optim_wrapper = {{_base_.shapes_optim_wrapper}}
param_scheduler = {{_base_.shapes_param_scheduler}}
default_hooks = {{_base_.shapes_default_hooks}}
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
auto_scale_lr = dict(base_batch_size=4)
