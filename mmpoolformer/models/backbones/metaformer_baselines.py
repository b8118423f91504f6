"""The MetaFormer baselines (Yu et al., "MetaFormer Baselines for Vision", TPAMI 2024).

IdentityFormer, RandFormer, PoolFormerV2, ConvFormer and CAFormer are one MetaFormer with
different token mixers. What they share, from the official sail-sg/metaformer definition:
- StarReLU MLPs (ratio 4) without biases;
- no layer scale; res scale (init 1) on both residuals of stages 2 and 3;
- a stem conv (7x7, stride 4, padding 2) followed by a bias-free LayerNorm, and
  downsampling convs (3x3, stride 2, padding 1) preceded by one; eps 1e-6;
- block norms without bias, eps 1e-6: over (H, W, C) with a per-channel weight
  ("modified LayerNorm", i.e. one-group GroupNorm) for IdentityFormer, RandFormer and
  PoolFormerV2; over C (LayerNorm) for ConvFormer and CAFormer.
The classifier's final norm and head are not part of a dense backbone. Each output stage
gets its own LayerNorm (eps 1e-6, with bias); those are not in ImageNet checkpoints.
"""
from typing import Optional, Sequence, Union

from ...registry import register_backbone
from .metaformer import MetaFormer
from .poolformer import resolve_arch

_LN = dict(type='LN', eps=1e-6, bias=False)
_GN1 = dict(type='GN', num_groups=1, eps=1e-6, bias=False)

_POOLFORMER_SIZES = {
    's12': dict(layers=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512]),
    's24': dict(layers=[4, 4, 12, 4], embed_dims=[64, 128, 320, 512]),
    's36': dict(layers=[6, 6, 18, 6], embed_dims=[64, 128, 320, 512]),
    'm36': dict(layers=[6, 6, 18, 6], embed_dims=[96, 192, 384, 768]),
    'm48': dict(layers=[8, 8, 24, 8], embed_dims=[96, 192, 384, 768]),
}
_CONVFORMER_SIZES = {
    's18': dict(layers=[3, 3, 9, 3], embed_dims=[64, 128, 320, 512]),
    's36': dict(layers=[3, 12, 18, 3], embed_dims=[64, 128, 320, 512]),
    'm36': dict(layers=[3, 12, 18, 3], embed_dims=[96, 192, 384, 576]),
    'b36': dict(layers=[3, 12, 18, 3], embed_dims=[128, 256, 512, 768]),
}


class MetaFormerBaseline(MetaFormer):
    """Common constructor of the baselines; subclasses set archs, mixers and block norm.

    Args:
        arch (str | dict): A name from the family's ``arch_settings`` or a dict with keys
            ``layers`` and ``embed_dims``.
        token_mixers (dict | Sequence[dict], optional): Override the family's mixers (one
            config for all stages, or one per stage).
        out_indices, frozen_stages, norm_eval, with_cp, drop_rate, drop_path_rate,
        quadratic_memory_limit, in_channels, init_cfg: as in :class:`MetaFormer`.
        out_norm_cfg (dict): Norm of each returned output. Defaults to LayerNorm, eps 1e-6.
        res_scale_init_values (Sequence): Res-scale init per stage (None: no res scale).
    """

    arch_settings: dict = {}
    default_mixers: Union[dict, list] = dict(type='Identity')
    block_norm: dict = _GN1

    def __init__(self,
                 arch: Union[str, dict] = None,
                 token_mixers: Optional[Union[dict, Sequence[dict]]] = None,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: dict = dict(type='LN', eps=1e-6),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 res_scale_init_values: Sequence = (None, None, 1.0, 1.0),
                 quadratic_memory_limit: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        arch = next(iter(self.arch_settings)) if arch is None else arch
        self.arch = resolve_arch(arch, self.arch_settings, type(self).__name__)
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        super().__init__(
            layers=self.arch['layers'],
            embed_dims=self.arch['embed_dims'],
            token_mixers=self.default_mixers if token_mixers is None else token_mixers,
            mlp_ratios=4,
            norm_cfg=self.block_norm,
            act_cfg=dict(type='StarReLU'),
            layer_scale_init_values=None,
            res_scale_init_values=list(res_scale_init_values),
            mlp_bias=False,
            in_channels=in_channels,
            stem=dict(kernel_size=7, stride=4, padding=2, post_norm=_LN),
            downsample=dict(kernel_size=3, stride=2, padding=1, pre_norm=_LN),
            out_indices=out_indices,
            out_norm_cfg=out_norm_cfg,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            quadratic_memory_limit=quadratic_memory_limit,
            init_cfg=init_cfg)


@register_backbone
class IdentityFormer(MetaFormerBaseline):
    """MetaFormer with no token mixing at all: the lower bound of the MetaFormer idea."""
    arch_settings = _POOLFORMER_SIZES
    default_mixers = dict(type='Identity')


@register_backbone
class RandFormer(MetaFormerBaseline):
    """Identity mixing in stages 0-1, a frozen random mixing matrix in stages 2-3.

    The official matrices are tied to a 224 x 224 input (14 x 14 and 7 x 7 tokens);
    :class:`~mmpoolformer.models.layers.RandomMixing` resamples them to any size.
    """
    arch_settings = _POOLFORMER_SIZES
    default_mixers = [dict(type='Identity'), dict(type='Identity'),
                      dict(type='RandomMixing', num_tokens=196),
                      dict(type='RandomMixing', num_tokens=49)]


@register_backbone
class PoolFormerV2(MetaFormerBaseline):
    """PoolFormer with the baselines' StarReLU, bias-free norms and res scale."""
    arch_settings = _POOLFORMER_SIZES
    default_mixers = dict(type='Pooling', pool_size=3)


@register_backbone
class ConvFormer(MetaFormerBaseline):
    """Separable-convolution mixers (MobileNetV2's inverted block) in every stage."""
    arch_settings = _CONVFORMER_SIZES
    default_mixers = dict(type='SepConv')
    block_norm = _LN


@register_backbone
class CAFormer(MetaFormerBaseline):
    """Separable convolutions in stages 0-1, self-attention in stages 2-3."""
    arch_settings = _CONVFORMER_SIZES
    default_mixers = [dict(type='SepConv'), dict(type='SepConv'),
                      dict(type='Attention', head_dim=32),
                      dict(type='Attention', head_dim=32)]
    block_norm = _LN
