from typing import Optional, Sequence, Union

from ...registry import register_backbone
from .metaformer import MetaFormer


@register_backbone
class PoolFormer(MetaFormer):
    """PoolFormer ("MetaFormer Is Actually What You Need for Vision", CVPR 2022).

    A MetaFormer whose token mixer is ``avg_pool(x) - x``, with one-group GroupNorm, GELU
    MLPs, layer scale and no norm in the stem or downsampling: the official definition,
    parameter for parameter, so official ImageNet checkpoints load.

    Args:
        arch (str | dict): One of ``s12, s24, s36, m36, m48``, or a dict with keys
            ``layers``, ``embed_dims``, ``mlp_ratios`` and ``layer_scale_init_value``.
        pool_size (int): Pooling window (odd). Defaults to 3.
        token_mixers (dict | Sequence[dict], optional): Replace the pooling mixer, for all
            stages or per stage. The paper's hybrid is ``[dict(type='Pooling'),
            dict(type='Pooling'), dict(type='Attention'), dict(type='Attention')]``; its
            ablations also use ``Identity``, ``DWConv`` and ``RandomMixing``.
        in_channels (int): Image channels. Defaults to 3.
        out_indices (Sequence[int]): Stages to return, 0..3 (not mmpretrain's interleaved
            0, 2, 4, 6). Defaults to (0, 1, 2, 3): strides 4, 8, 16, 32.
        frozen_stages (int): -1 (default) freezes nothing; k freezes the stem and stages
            0..k-1 with their downsampling and output norms.
        norm_eval (bool): Keep BatchNorm layers (if ``norm_cfg`` uses them) in eval mode.
        with_cp (bool): Activation checkpointing per block.
        drop_rate (float): Dropout in the MLPs. Defaults to 0.
        drop_path_rate (float): Stochastic depth, linear over all blocks. Defaults to 0.
        norm_cfg (dict): Norm inside blocks and of the outputs.
            Defaults to ``dict(type='GN', num_groups=1)`` (eps 1e-5).
        act_cfg (dict): MLP activation. Defaults to ``dict(type='GELU')`` (exact).
        init_cfg (dict, optional): e.g. ``dict(type='Pretrained', checkpoint=URL)``.
    """

    arch_settings = {
        's12': dict(layers=[2, 2, 6, 2], embed_dims=[64, 128, 320, 512], mlp_ratios=4,
                    layer_scale_init_value=1e-5),
        's24': dict(layers=[4, 4, 12, 4], embed_dims=[64, 128, 320, 512], mlp_ratios=4,
                    layer_scale_init_value=1e-5),
        's36': dict(layers=[6, 6, 18, 6], embed_dims=[64, 128, 320, 512], mlp_ratios=4,
                    layer_scale_init_value=1e-6),
        'm36': dict(layers=[6, 6, 18, 6], embed_dims=[96, 192, 384, 768], mlp_ratios=4,
                    layer_scale_init_value=1e-6),
        'm48': dict(layers=[8, 8, 24, 8], embed_dims=[96, 192, 384, 768], mlp_ratios=4,
                    layer_scale_init_value=1e-6),
    }

    def __init__(self,
                 arch: Union[str, dict] = 's12',
                 pool_size: int = 3,
                 token_mixers: Optional[Union[dict, Sequence[dict]]] = None,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: dict = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 quadratic_memory_limit: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        self.arch = resolve_arch(arch, self.arch_settings, type(self).__name__)
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        super().__init__(
            layers=self.arch['layers'],
            embed_dims=self.arch['embed_dims'],
            token_mixers=dict(type='Pooling', pool_size=pool_size)
            if token_mixers is None else token_mixers,
            mlp_ratios=self.arch['mlp_ratios'],
            norm_cfg=norm_cfg,
            act_cfg=act_cfg,
            layer_scale_init_values=self.arch['layer_scale_init_value'],
            res_scale_init_values=None,
            mlp_bias=True,
            in_channels=in_channels,
            stem=dict(kernel_size=7, stride=4, padding=2),
            downsample=dict(kernel_size=3, stride=2, padding=1),
            out_indices=out_indices,
            out_norm_cfg=norm_cfg,
            frozen_stages=frozen_stages,
            norm_eval=norm_eval,
            with_cp=with_cp,
            drop_rate=drop_rate,
            drop_path_rate=drop_path_rate,
            quadratic_memory_limit=quadratic_memory_limit,
            init_cfg=init_cfg)


def resolve_arch(arch, settings: dict, family: str) -> dict:
    """Return the arch dict for a name in ``settings`` or a user dict with the same keys."""
    if isinstance(arch, str):
        if arch not in settings:
            raise KeyError(f'unknown {family} arch {arch!r}; valid archs: '
                           f'{", ".join(settings)} (or a dict with keys '
                           f'{", ".join(next(iter(settings.values())))})')
        return dict(settings[arch])
    if isinstance(arch, dict):
        required = set(next(iter(settings.values())))
        missing, extra = required - set(arch), set(arch) - required
        if missing or extra:
            raise KeyError(f'a custom {family} arch dict needs exactly the keys '
                           f'{sorted(required)}; missing {sorted(missing)}, '
                           f'unknown {sorted(extra)}')
        return dict(arch)
    raise TypeError(f'arch must be a name ({", ".join(settings)}) or a dict, got {arch!r}')
