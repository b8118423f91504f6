"""Our backbones paired with the official definitions, and their gradients side by side.

Used by the parity suite (``tests/test_models/test_parity.py``), the other backbone tests
and the benchmark: one place that knows how to give both models the same weights and how
to compare their gradients under our parameter names.
"""
from typing import Callable, Dict, Optional, Sequence

import torch
import torch.nn as nn

from .official_metaformer import OfficialMetaFormer
from .official_poolformer import official_from_arch, randomize_

S12, S18 = [2, 2, 6, 2], [3, 3, 9, 3]
DIMS = [64, 128, 320, 512]
HYBRID_MIXERS = [dict(type='Pooling'), dict(type='Pooling'), dict(type='Attention'),
                 dict(type='Attention')]


def build_ours(family: str, arch: str = 's12', **kwargs) -> nn.Module:
    """Our backbone of ``family`` (PoolFormer of size ``arch``), random init."""
    from ..models import CAFormer, ConvFormer, IdentityFormer, PoolFormer, PoolFormerV2, RandFormer
    make = {
        'PoolFormer': lambda: PoolFormer(arch, **kwargs),
        'hybrid PoolFormer': lambda: PoolFormer('s12', token_mixers=HYBRID_MIXERS, **kwargs),
        'PoolFormerV2': lambda: PoolFormerV2('s12', **kwargs),
        'IdentityFormer': lambda: IdentityFormer('s12', **kwargs),
        'RandFormer': lambda: RandFormer('s12', **kwargs),
        'ConvFormer': lambda: ConvFormer('s18', **kwargs),
        'CAFormer': lambda: CAFormer('s18', **kwargs),
    }
    return make[family]()


def build_official(family: str, arch: str = 's12',
                   out_indices=(0, 1, 2, 3)) -> nn.Module:
    """The official definition of ``family`` (the test oracle), torch's default init."""
    from ..models import PoolFormer
    make = {
        'PoolFormer': lambda: official_from_arch(PoolFormer.arch_settings[arch],
                                                 out_indices=out_indices),
        'hybrid PoolFormer': lambda: OfficialMetaFormer(
            S12, DIMS, ['Pooling', 'Pooling', 'Attention', 'Attention'], 'gn1_affine',
            poolformer_v1=True),
        'PoolFormerV2': lambda: OfficialMetaFormer(S12, DIMS, ['Pooling'] * 4, 'gn1'),
        'IdentityFormer': lambda: OfficialMetaFormer(S12, DIMS, ['Identity'] * 4, 'gn1'),
        'RandFormer': lambda: OfficialMetaFormer(
            S12, DIMS, ['Identity', 'Identity', 'RandomMixing:196', 'RandomMixing:49'],
            'gn1'),
        'ConvFormer': lambda: OfficialMetaFormer(S18, DIMS, ['SepConv'] * 4, 'ln'),
        'CAFormer': lambda: OfficialMetaFormer(
            S18, DIMS, ['SepConv', 'SepConv', 'Attention', 'Attention'], 'ln'),
    }
    return make[family]()


FAMILIES = ('PoolFormer', 'hybrid PoolFormer', 'PoolFormerV2', 'IdentityFormer',
            'RandFormer', 'ConvFormer', 'CAFormer')

# An input size each family supports; odd where the family allows it. The official random
# mixing matrices only apply at 224 x 224 (14 x 14 and 7 x 7 tokens).
INPUT_SIZES = {family: (45, 61) for family in FAMILIES}
INPUT_SIZES['RandFormer'] = (224, 224)


def paired(family: str, seed: int = 0, arch: str = 's12', **kwargs):
    """(ours, official): our ``family`` backbone holding the official model's random weights.

    ``arch`` picks PoolFormer's size (s12 ... m48; the other families are s12/s18).
    ``kwargs`` go to our constructor (with_cp, frozen_stages, ...); ``out_indices`` is
    honoured by PoolFormer only (the official baselines return all four stages).
    """
    from ..checkpoint import convert_state_dict
    if family not in FAMILIES:
        raise KeyError(f'unknown family {family!r}; valid: {", ".join(FAMILIES)}')
    out_indices = kwargs.get('out_indices', (0, 1, 2, 3))
    if family != 'PoolFormer' and (arch != 's12' or tuple(out_indices) != (0, 1, 2, 3)):
        raise ValueError(f'paired({family!r}) supports only the default arch and '
                         f'out_indices')
    torch.manual_seed(seed)
    ref = randomize_(build_official(family, arch, out_indices), seed)
    ours = build_ours(family, arch, **kwargs)
    converted = convert_state_dict(ref.state_dict(), with_out_norms=True)[0]
    ours.load_state_dict(converted, strict=True)
    return ours, ref


def gradients(model: nn.Module, x: torch.Tensor, weights: Sequence[torch.Tensor],
              under: Optional[Callable] = None) -> Dict[str, torch.Tensor]:
    """Outputs' weighted sum backpropagated: {'input': dx, our parameter name: grad}.

    The official models' gradients are renamed to our parameter names. ``x`` gets a copy
    that requires grad; ``under`` is an optional context manager factory for the forward.
    """
    from ..checkpoint import convert_state_dict
    x = x.detach().clone().requires_grad_()
    model.zero_grad(set_to_none=True)
    if under is None:
        outs = model(x)
    else:
        with under():
            outs = model(x)
    sum((o.to(w.dtype) * w.to(o.device)).sum() for o, w in zip(outs, weights)).backward()
    from ..models import MetaFormer
    grads = {k: p.grad for k, p in model.named_parameters() if p.grad is not None}
    if not isinstance(model, MetaFormer):
        grads = convert_state_dict(grads, with_out_norms=True)[0]
    grads['input'] = x.grad
    return grads


def relative_errors(got: Dict[str, torch.Tensor], truth: Dict[str, torch.Tensor],
                    floor: float = 1e-6) -> Dict[str, float]:
    """max |got - truth| / max(max |truth|, floor * the largest gradient), per key.

    The floor keeps gradients that are exactly zero in truth (e.g. a bias that cancels)
    from dividing by zero.
    """
    largest = max(g.abs().max().item() for g in truth.values())
    errors = {}
    for key, want in truth.items():
        scale = max(want.abs().max().item(), floor * largest)
        diff = (got[key].double().cpu() - want.double().cpu()).abs().max().item()
        errors[key] = diff / scale
    return errors
