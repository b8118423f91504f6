"""The MetaFormer baselines (Yu et al., "MetaFormer Baselines for Vision", TPAMI 2024).

IdentityFormer, RandFormer, PoolFormerV2, ConvFormer and CAFormer are one MetaFormer with
different token mixers. What they share, from the official sail-sg/metaformer definition
(``_BASELINES``):
- StarReLU MLPs (ratio 4) without biases;
- no layer scale; res scale (init 1) on both residuals of stages 2 and 3;
- a bias-free LayerNorm (eps 1e-6) after the stem conv and before each downsampling conv;
- block norms without bias, eps 1e-6: over (H, W, C) with a per-channel weight
  ("modified LayerNorm", i.e. one-group GroupNorm) for IdentityFormer, RandFormer and
  PoolFormerV2; over C (LayerNorm) for ConvFormer and CAFormer.
The classifier's final norm and head are not part of a dense backbone. Each output stage
gets its own LayerNorm (eps 1e-6, with bias); those are not in ImageNet checkpoints.
Every argument: see :class:`MetaFormer`.
"""
from ...registry import register_backbone
from .metaformer import FamilySpec, MetaFormer
from .poolformer import POOLFORMER_SIZES

_LN = dict(type='LN', eps=1e-6, bias=False)
_GN1 = dict(type='GN', num_groups=1, eps=1e-6, bias=False)
_BASELINES = dict(act_cfg=dict(type='StarReLU'), mlp_bias=False,
                  res_scale_init_values=(None, None, 1.0, 1.0), stem_norm=_LN,
                  downsample_norm=_LN, out_norm_cfg=dict(type='LN', eps=1e-6))

_CONVFORMER_SIZES = {
    's18': dict(layers=[3, 3, 9, 3], embed_dims=[64, 128, 320, 512]),
    's36': dict(layers=[3, 12, 18, 3], embed_dims=[64, 128, 320, 512]),
    'm36': dict(layers=[3, 12, 18, 3], embed_dims=[96, 192, 384, 576]),
    'b36': dict(layers=[3, 12, 18, 3], embed_dims=[128, 256, 512, 768]),
}


class MetaFormerBaseline(MetaFormer):
    """The MetaFormer-baselines families (their shared spec is ``_BASELINES``)."""


@register_backbone
class IdentityFormer(MetaFormerBaseline):
    """MetaFormer with no token mixing at all: the lower bound of the MetaFormer idea."""
    arch_settings = POOLFORMER_SIZES
    family = FamilySpec(token_mixers=dict(type='Identity'), norm_cfg=_GN1, **_BASELINES)


@register_backbone
class RandFormer(MetaFormerBaseline):
    """Identity mixing in stages 0-1, a frozen random mixing matrix in stages 2-3.

    The official matrices are tied to a 224 x 224 input (14 x 14 and 7 x 7 tokens);
    :class:`~mmpoolformer.models.layers.RandomMixing` resamples them to any size.
    """
    arch_settings = POOLFORMER_SIZES
    family = FamilySpec(
        token_mixers=(dict(type='Identity'), dict(type='Identity'),
                      dict(type='RandomMixing', num_tokens=196),
                      dict(type='RandomMixing', num_tokens=49)),
        norm_cfg=_GN1, **_BASELINES)


@register_backbone
class PoolFormerV2(MetaFormerBaseline):
    """PoolFormer with the baselines' StarReLU, bias-free norms and res scale."""
    arch_settings = POOLFORMER_SIZES
    family = FamilySpec(token_mixers=dict(type='Pooling', pool_size=3), norm_cfg=_GN1,
                        **_BASELINES)


@register_backbone
class ConvFormer(MetaFormerBaseline):
    """Separable-convolution mixers (MobileNetV2's inverted block) in every stage."""
    arch_settings = _CONVFORMER_SIZES
    family = FamilySpec(token_mixers=dict(type='SepConv'), norm_cfg=_LN, **_BASELINES)


@register_backbone
class CAFormer(MetaFormerBaseline):
    """Separable convolutions in stages 0-1, self-attention in stages 2-3."""
    arch_settings = _CONVFORMER_SIZES
    family = FamilySpec(
        token_mixers=(dict(type='SepConv'), dict(type='SepConv'),
                      dict(type='Attention', head_dim=32), dict(type='Attention', head_dim=32)),
        norm_cfg=_LN, **_BASELINES)
