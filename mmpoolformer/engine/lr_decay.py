"""Layer-wise and stage-wise learning-rate decay for every MetaFormer backbone.

mmdet's and mmseg's ``LearningRateDecayOptimizerConstructor`` parse ConvNeXt's (and BEiT's)
parameter names and refuse other backbones. This constructor asks the backbone for the
depth of each of its parameters (``MetaFormer.lr_decay_layout``), so it serves every
family and arch, and counts the layers itself::

    optim_wrapper = dict(
        type='AmpOptimWrapper',
        optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.05),
        constructor='MetaFormerDecayOptimizerConstructor',
        paramwise_cfg=dict(decay_rate=0.9, decay_type='stage_wise'))

A parameter at depth d gets ``lr * decay_rate ** (L + 1 - d)``, where L counts the blocks
(``layer_wise``) or the stages (``stage_wise``): the stem is at depth 0, the output norms,
the neck and the heads at L + 1 with the optimizer's lr. Parameters with at most one
dimension (norms, biases, layer and res scales, StarReLU's scalars) get no weight decay;
frozen parameters (``requires_grad=False``) are left out.
"""
from typing import List, Optional

import torch.nn as nn
from mmengine.logging import print_log
from mmengine.optim import DefaultOptimWrapperConstructor

from ..registry import register_downstream


def find_backbone(model: nn.Module):
    """(name prefix, backbone) of the MetaFormer in ``model``: ``model.backbone`` or the
    model itself."""
    from ..models.backbones import MetaFormer
    if isinstance(model, MetaFormer):
        return '', model
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, MetaFormer):
        return 'backbone.', backbone
    raise TypeError(f'MetaFormerDecayOptimizerConstructor needs a MetaFormer backbone '
                    f'(model.backbone, or the model itself); {type(model).__name__} has '
                    f'{type(backbone).__name__ if backbone is not None else "no backbone"}')


@register_downstream('OPTIM_WRAPPER_CONSTRUCTORS', root=True)
class MetaFormerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer wrapper whose parameter groups decay the lr with depth in the backbone.

    Args:
        optim_wrapper_cfg (dict): The optimizer wrapper's config, with ``optimizer``.
        paramwise_cfg (dict): ``decay_rate`` (float in (0, 1]) and ``decay_type``
            (``'layer_wise'``: a depth per block; ``'stage_wise'``: a depth per stage).
    """

    KEYS = ('decay_rate', 'decay_type')

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: Optional[dict] = None):
        cfg = dict(paramwise_cfg or {})
        if 'num_layers' in cfg:
            raise ValueError('paramwise_cfg.num_layers is not needed: the number of layers '
                             'is counted from the backbone; remove it')
        unknown = sorted(set(cfg) - set(self.KEYS))
        missing = [k for k in self.KEYS if k not in cfg]
        if unknown or missing:
            raise ValueError(f'paramwise_cfg of MetaFormerDecayOptimizerConstructor takes '
                             f'exactly {self.KEYS}; unknown: {unknown}, missing: {missing}')
        rate = cfg['decay_rate']
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
            raise ValueError(f'paramwise_cfg.decay_rate must be a number in (0, 1], got '
                             f'{rate!r}')
        self.decay_rate, self.decay_type = float(rate), cfg['decay_type']
        super().__init__(optim_wrapper_cfg, cfg)
        if self.base_lr is None:
            raise ValueError('MetaFormerDecayOptimizerConstructor needs optimizer.lr')

    def add_params(self, params: List[dict], module: nn.Module, **kwargs) -> None:
        prefix, backbone = find_backbone(module)
        depths, labels = backbone.lr_decay_layout(self.decay_type)
        top = len(labels)
        base_wd = self.base_wd or 0.
        groups = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue
            inner = name[len(prefix):] if name.startswith(prefix) else None
            depth = depths.get(inner, top)
            decay = param.ndim > 1
            group = groups.get((depth, decay))
            if group is None:
                scale = self.decay_rate ** (top - depth)
                group = groups[(depth, decay)] = dict(
                    params=[], param_names=[], depth=depth, lr_scale=scale,
                    lr=self.base_lr * scale, weight_decay=base_wd if decay else 0.)
            group['params'].append(param)
            group['param_names'].append(name)
        params.extend(groups[key] for key in sorted(groups))
        print_log(self.table(params, labels + ['output norms, neck, heads']),
                  logger='current')

    def table(self, groups: List[dict], labels: List[str]) -> str:
        """The parameter groups, one line each."""
        lines = [f'lr decay ({self.decay_type}, rate {self.decay_rate}): '
                 f'{len(groups)} parameter groups',
                 f'{"depth":>5}  {"holds":<40} {"lr scale":>9} {"lr":>10} {"wd":>7} '
                 f'{"tensors":>7} {"params":>10}']
        for g in groups:
            lines.append(f'{g["depth"]:>5}  {labels[g["depth"]]:<40} {g["lr_scale"]:>9.4f} '
                         f'{g["lr"]:>10.3e} {g["weight_decay"]:>7.3g} {len(g["params"]):>7} '
                         f'{sum(p.numel() for p in g["params"]):>10,}')
        return '\n'.join(lines)
