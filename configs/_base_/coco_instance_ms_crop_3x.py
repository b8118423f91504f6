# COCO instance segmentation, 3x (36 epochs) with multi-scale + crop training and AdamW:
# the recipe by which mmdet trains ConvNeXt and Swin detectors (DETR's augmentation).
# The model bases (mask_rcnn_3x_metaformer.py, cascade_mask_rcnn_3x_metaformer.py) add the
# detector; arch configs set the lr-decay rate. docs/protocols.md has the sources.
_base_ = [
    'mmdet::_base_/datasets/coco_instance.py',
    'mmdet::_base_/schedules/schedule_1x.py',
    'mmdet::_base_/default_runtime.py',
]
# The shorter side drawn from 480..800 (long side <= 1333); or, half of the time, resized
# to 400/500/600, a random 384..600 crop, then resized as before.
multi_scale = [(480, 1333), (512, 1333), (544, 1333), (576, 1333), (608, 1333), (640, 1333),
               (672, 1333), (704, 1333), (736, 1333), (768, 1333), (800, 1333)]
train_pipeline = [
    dict(type='LoadImageFromFile', backend_args={{_base_.backend_args}}),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='RandomFlip', prob=0.5),
    dict(
        type='RandomChoice',
        transforms=[
            [dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True)],
            [
                dict(type='RandomChoiceResize', scales=[(400, 1333), (500, 1333), (600, 1333)],
                     keep_ratio=True),
                dict(type='RandomCrop', crop_type='absolute_range', crop_size=(384, 600),
                     allow_negative_crop=True),
                dict(type='RandomChoiceResize', scales=multi_scale, keep_ratio=True),
            ],
        ]),
    dict(type='PackDetInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
max_epochs = 36
train_cfg = dict(max_epochs=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.001, by_epoch=False, begin=0, end=1000),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[27, 33],
         gamma=0.1),
]
# lr is the detector's (model bases); decay_rate the arch's (arch configs): a parameter at
# depth d of the backbone (stem 0, block k at k + 1) gets lr * decay_rate ** (L + 1 - d),
# L = number of blocks; output norms, neck and heads the full lr. No weight decay on norms,
# biases, layer/res scales.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='MetaFormerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_type='layer_wise'))
# 8 GPUs x 2 images (the dataset base's batch_size=2). `--auto-scale-lr` rescales lr to yours.
auto_scale_lr = dict(enable=False, base_batch_size=16)
