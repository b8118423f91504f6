# configs/mask_rcnn_poolformer_s12.py on the synthetic shapes dataset, CPU-sized.
# Changed: data paths, image scale, class count and schedule (configs/quickstart/_base_/); a
# 128-channel FPN on strides 4-32 with RPN anchors sized for the 21-72 px objects (16-128
# px), narrower RoI heads (1024-channel fc: 256; 256-channel mask convs: 64), fewer
# proposals and sampled RoIs, RoIAlign with 2x2 samples per bin; flips as in the
# RetinaNet quickstart. mmcv's CPU RoIAlign is most of a step: these cut it from
# about 4 s to 1-1.4 s (docs/quickstart.md). The backbone starts from scratch (offline
# machine; drop `init_cfg=None` for ImageNet weights).
_base_ = ['../mask_rcnn_poolformer_s12.py', './_base_/shapes_detection.py']

_strides = [4, 8, 16, 32]
model = dict(
    backbone=dict(init_cfg=None),
    neck=dict(out_channels=128, num_outs=4),
    rpn_head=dict(in_channels=128, feat_channels=128,
                  anchor_generator=dict(scales=[4], strides=_strides)),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=128, featmap_strides=_strides,
                                roi_layer=dict(sampling_ratio=2)),
        bbox_head=dict(in_channels=128, fc_out_channels=256, num_classes=3),
        mask_roi_extractor=dict(out_channels=128, featmap_strides=_strides,
                                roi_layer=dict(sampling_ratio=2)),
        mask_head=dict(in_channels=128, conv_out_channels=64, num_classes=3)),
    train_cfg=dict(
        rpn_proposal=dict(nms_pre=500, max_per_img=200),
        rcnn=dict(sampler=dict(num=64))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=200)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale={{_base_.shapes_scale}}, keep_ratio=True),
    dict(type='RandomFlip', prob=[0.25, 0.25, 0.25],
         direction=['horizontal', 'vertical', 'diagonal']),
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
