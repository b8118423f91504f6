# The quickstart RetinaNet (3 classes) with the real config's COCO-sized FPN and head
# (256 channels, strides 8-128, octave base scale 4), which the official RetinaNet
# checkpoints have; the quickstart recipe narrows both (docs/quickstart.md).
_base_ = ['../../../configs/quickstart/retinanet_poolformer_s12_shapes.py']
model = dict(
    neck=dict(out_channels=256, num_outs=5),
    bbox_head=dict(
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(octave_base_scale=4, strides=[8, 16, 32, 64, 128])))
