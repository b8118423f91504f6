# The PoolFormer paper's hybrid S12 (pooling in stages 0-1, attention in stages 2-3): see
# ./_base_/poolformer_hybrid_s12.py.
_base_ = ['./_base_/mask_rcnn_poolformer.py', './_base_/poolformer_hybrid_s12.py']
model = dict(backbone={{_base_.hybrid_s12_backbone}})
