from ...registry import register_backbone
from .metaformer import FamilySpec, MetaFormer

# The sizes of PoolFormer, shared by the baselines built on them (PoolFormerV2,
# IdentityFormer, RandFormer).
POOLFORMER_SIZES = {
    's12': dict(layers=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512]),
    's24': dict(layers=[4, 4, 12, 4], embed_dims=[64, 128, 320, 512]),
    's36': dict(layers=[6, 6, 18, 6], embed_dims=[64, 128, 320, 512]),
    'm36': dict(layers=[6, 6, 18, 6], embed_dims=[96, 192, 384, 768]),
    'm48': dict(layers=[8, 8, 24, 8], embed_dims=[96, 192, 384, 768]),
}
_LAYER_SCALE = {'s12': 1e-5, 's24': 1e-5, 's36': 1e-6, 'm36': 1e-6, 'm48': 1e-6}


@register_backbone
class PoolFormer(MetaFormer):
    """PoolFormer ("MetaFormer Is Actually What You Need for Vision", CVPR 2022).

    A MetaFormer whose token mixer is ``avg_pool(x) - x``, with one-group GroupNorm
    (eps 1e-5), exact-GELU MLPs with biases, layer scale and no norm in the stem or the
    downsampling: the official definition, parameter for parameter, so official ImageNet
    checkpoints load. Its output norms are its ``norm_cfg``.

    ``arch``: ``s12, s24, s36, m36, m48`` or a dict with keys ``layers``, ``embed_dims``,
    ``mlp_ratios`` and ``layer_scale_init_value``. The paper's hybrid is
    ``token_mixers=[dict(type='Pooling')] * 2 + [dict(type='Attention')] * 2``; its
    ablations also use ``Identity``, ``DWConv`` and ``RandomMixing``. Every argument: see
    :class:`MetaFormer`.
    """

    arch_settings = {
        name: dict(**size, mlp_ratios=4, layer_scale_init_value=_LAYER_SCALE[name])
        for name, size in POOLFORMER_SIZES.items()
    }
    family = FamilySpec(
        token_mixers=dict(type='Pooling'),
        norm_cfg=dict(type='GN', num_groups=1),
        act_cfg=dict(type='GELU'),
        mlp_bias=True)


__all__ = ['POOLFORMER_SIZES', 'PoolFormer']
