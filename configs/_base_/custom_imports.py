# Registers mmpoolformer's backbones (in its own scope and in mmdet's and mmseg's).
custom_imports = dict(imports=['mmpoolformer'], allow_failed_imports=False)
