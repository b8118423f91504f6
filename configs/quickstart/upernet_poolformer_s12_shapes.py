# configs/upernet_poolformer_s12.py on the synthetic shapes dataset, CPU-sized, with its
# stage-wise lr decay (0.9) and auxiliary head (tools/quickstart.sh --task upernet trains
# it with --amp; without CUDA, tools/train.py runs the config's AmpOptimWrapper as bf16
# autocast).
# Changed: data, image size and schedule (./_base_/shapes_segmentation.py), class count,
# 64-channel heads (ADE20K's 512 and 256 cost more per step than these four classes need)
# with GroupNorm instead of batch norm (the pyramid pooling's 1x1-6x6 maps over a batch of
# 4 give batch statistics that the test-time running averages do not match),
# whole-image inference (the images are smaller than a sliding window), no stochastic
# depth (from scratch, 2000 iterations), a 50-iteration warmup and AdamW at 2e-3. The
# backbone starts from scratch (offline machine; drop `init_cfg=None` to start from
# ImageNet weights). Figures: docs/quickstart.md.
_base_ = ['../upernet_poolformer_s12.py', './_base_/shapes_segmentation.py']

_head_norm = dict(type='GN', num_groups=16, requires_grad=True)
model = dict(
    backbone=dict(init_cfg=None, drop_path_rate=0.),
    data_preprocessor=dict(size={{_base_.shapes_crop_size}}),
    decode_head=dict(channels=64, num_classes=4, norm_cfg=_head_norm),
    auxiliary_head=dict(channels=64, num_classes=4, norm_cfg=_head_norm),
    test_cfg=dict(_delete_=True, mode='whole'))

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
