# UperNet with a MetaFormer backbone, ADE20K, 160k iterations: the protocol by which mmseg
# trains ConvNeXt (and, but for the optimizer, Swin), so that the results compare with
# theirs. Arch configs set the backbone (type, arch, drop_path_rate, ImageNet checkpoint) and
# the heads' channels where the widths differ from the S models'. docs/protocols.md has the
# sources and the reasons.
_base_ = [
    'mmseg::_base_/models/upernet_r50.py',
    'mmseg::_base_/datasets/ade20k.py',
    'mmseg::_base_/schedules/schedule_160k.py',
    'mmseg::_base_/default_runtime.py',
    './custom_imports.py',
]
crop_size = (512, 512)
model = dict(
    data_preprocessor=dict(size=crop_size),
    # The ResNet base's 'open-mmlab://resnet50_v1c' would reach the backbone as its
    # `pretrained`; the ImageNet weights come through backbone.init_cfg instead.
    pretrained=None,
    backbone=dict(
        _delete_=True,
        type='PoolFormer',
        # Contiguous NCHW outputs (the backbone's default). Unlike Semantic FPN's light head,
        # UperNet's ran no faster on channels-last views (S12, 2x512x512, busy 2-core CPU:
        # bf16 training step 60 s vs 57 s NCHW, mean of 4; fp32 inference 15.5 s vs 14.5 s).
        out_indices=(0, 1, 2, 3)),
    decode_head=dict(in_channels=[64, 128, 320, 512], num_classes=150),
    # FCN auxiliary head on stage 2 (stride 16): its in_channels are that stage's width.
    auxiliary_head=dict(in_index=2, in_channels=320, num_classes=150),
    # Sliding 512x512 windows over the 2048x512 keep-ratio resize, as upstream. Every
    # window is 512x512 (a multiple of 32), so the Semantic FPN configs'
    # ResizeToMultiple, made for whole-image inference, has no place here; the test
    # pipeline stays mmseg's, as it must for the results to compare.
    test_cfg=dict(mode='slide', crop_size=crop_size, stride=(341, 341)))
# The backbone's lr decays with depth: stage i at 0.9 ** (4 - i), the stem at 0.9 ** 5,
# output norms, neck and heads at the full lr (mmpoolformer's constructor counts the stages
# itself). No weight decay on norms, biases, layer/res scales.
optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    loss_scale='dynamic',
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
    constructor='MetaFormerDecayOptimizerConstructor',
    paramwise_cfg=dict(decay_type='stage_wise', decay_rate=0.9))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=160000),
]
# 8 GPUs x 2 images. `--auto-scale-lr` rescales lr to yours.
train_dataloader = dict(batch_size=2)
val_dataloader = dict(batch_size=1)
test_dataloader = val_dataloader
auto_scale_lr = dict(enable=False, base_batch_size=16)
