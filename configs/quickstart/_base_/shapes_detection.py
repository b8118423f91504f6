# What the detection quickstarts share: the synthetic shapes data in COCO's layout
# (python tools/dataset_converters/make_shapes.py data/shapes) and a CPU-sized schedule
# (the RetinaNet quickstart sets its own, longer one).
# Only uniquely named variables: a config may not get the same key from two bases, so the
# quickstart configs, which also inherit a real config, pick these up as {{_base_.name}}.
shapes_data_root = 'data/shapes/coco/'
shapes_val_ann = shapes_data_root + 'annotations/instances_val2017.json'
shapes_metainfo = dict(
    classes=('circle', 'square', 'triangle'),
    palette=[(220, 20, 60), (0, 130, 230), (250, 170, 30)])
shapes_scale = (192, 192)
# Next to COCO's mAP, what the quickstart pictures show, counted on every validation image:
# the boxes drawn at score >= 0.3 that are correct, duplicates, of a wrong class or on
# background, and the objects missed (mmpoolformer/evaluation/detection_errors.py).
shapes_drawn_metric = dict(type='mmpoolformer.DetectionErrorMetric', ann_file=shapes_val_ann,
                           score_thr=0.3)
shapes_batch_size = 4

_iters = 750
shapes_train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=_iters, val_interval=_iters)
shapes_optim_wrapper = dict(
    optimizer=dict(lr=1e-3), clip_grad=dict(max_norm=10, norm_type=2))
shapes_param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='CosineAnnealingLR', by_epoch=False, begin=50, end=_iters, eta_min=1e-5)
]
shapes_default_hooks = dict(
    logger=dict(interval=50),
    checkpoint=dict(by_epoch=False, interval=_iters, max_keep_ckpts=2))
