# The PoolFormer paper's hybrid S12: pooling in stages 0-1, self-attention in stages 2-3
# (81.0% ImageNet top-1 in its ablation). No ImageNet checkpoint of it is public: the
# backbone starts from scratch unless you set init_cfg to weights of your own.
# Used as `model = dict(backbone={{_base_.hybrid_s12_backbone}})`.
hybrid_s12_backbone = dict(
    arch='s12',
    token_mixers=[
        dict(type='Pooling'),
        dict(type='Pooling'),
        dict(type='Attention', head_dim=32),
        dict(type='Attention', head_dim=32),
    ])
