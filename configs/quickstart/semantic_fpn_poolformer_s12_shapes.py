# configs/semantic_fpn_poolformer_s12.py on the synthetic shapes dataset, CPU-sized
# (tools/quickstart.sh --task seg trains it with --amp).
# Changed: data, image size and schedule (./_base_/shapes_segmentation.py), class count, and a
# 128-channel FPN with a 64-channel head (COCO's 256 and 128 cost more per step than these
# four classes need); AdamW at 2e-3. The backbone starts from scratch (offline machine;
# drop `init_cfg=None` to start from ImageNet weights). Figures: docs/quickstart.md.
_base_ = ['../semantic_fpn_poolformer_s12.py', './_base_/shapes_segmentation.py']

model = dict(
    backbone=dict(init_cfg=None),
    data_preprocessor=dict(size={{_base_.shapes_crop_size}}),
    neck=dict(out_channels=128),
    decode_head=dict(in_channels=[128, 128, 128, 128], channels=64, num_classes=4))

# (mmseg's inference_model and MMSegInferencer read the top-level test_pipeline)
train_pipeline = {{_base_.shapes_train_pipeline}}
test_pipeline = {{_base_.shapes_test_pipeline}}
train_dataloader = {{_base_.shapes_train_dataloader}}
val_dataloader = {{_base_.shapes_val_dataloader}}
test_dataloader = val_dataloader
train_cfg = {{_base_.shapes_train_cfg}}
optim_wrapper = dict(
    optimizer=dict(lr=2e-3, weight_decay=0.01), clip_grad=dict(max_norm=10, norm_type=2))
param_scheduler = {{_base_.shapes_param_scheduler}}
default_hooks = {{_base_.shapes_default_hooks}}
auto_scale_lr = dict(base_batch_size=4)
randomness = dict(seed=0)
