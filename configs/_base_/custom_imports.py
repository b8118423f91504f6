# Registers mmpoolformer's backbones (in its own scope and in mmdet's and mmseg's).
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
# Every tool that runs these configs (ours, mmdet's and mmseg's tools/train.py) stops
# before the first iteration if the neck's in_channels disagree with the backbone's.
custom_hooks = [dict(type='mmpoolformer.NeckChannelsCheckHook')]
