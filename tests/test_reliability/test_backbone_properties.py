"""Property-based tests of the backbones over input size, batch, dtype, mode and arch.

For every input of height and width 1..1100: below the stem's minimum (3 x 3 for a 7/4/2
stem) a ValueError saying so; otherwise one output per stage whose shape follows the conv
arithmetic, and only finite values for a finite input, in fp32 and under bf16 autocast.

Another backbone family is tested by appending a Family to FAMILIES.
"""
import functools
from dataclasses import dataclass, field
from typing import Callable, Optional

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mmpoolformer.models import (
    CAFormer,
    ConvFormer,
    IdentityFormer,
    PoolFormer,
    PoolFormerV2,
    RandFormer,
)
from mmpoolformer.testing import randomize_

MAX_SIDE = 1100
# To keep this file within ~30 s on 2 cores, a drawn example costs at most what a quarter
# of a 1100 x 1100 image costs PoolFormer-S12: bigger archs and batches get proportionally
# fewer pixels (a narrower image), so every arch still meets both extremes of height and
# width. The full 1100 x 1100 image is an explicit example below.
MAX_EXAMPLES = 60


def conv_out(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


@dataclass
class Family:
    cls: type
    archs: Optional[list] = None  # default: all of cls.arch_settings
    stem: tuple = (7, 4, 2)  # kernel, stride, padding
    downsample: tuple = (3, 2, 1)
    # Relative cost of an arch per input pixel (default: MLP FLOPs, blocks x C^2 / stride^2).
    cost: Optional[Callable] = None
    kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        self.archs = self.archs or list(self.cls.arch_settings)

    def settings(self, arch):
        return self.cls.arch_settings[arch]

    def arch_cost(self, arch):
        if self.cost is not None:
            return self.cost(arch)
        s = self.settings(arch)
        return sum(n * c * c / 4**i for i, (n, c) in enumerate(zip(s['layers'],
                                                                    s['embed_dims'])))

    def sizes(self, h, w):
        """(h, w) of each stage's output by the conv arithmetic."""
        h, w = conv_out(h, *self.stem), conv_out(w, *self.stem)
        sizes = [(h, w)]
        for _ in range(len(self.settings(self.archs[0])['layers']) - 1):
            h, w = conv_out(h, *self.downsample), conv_out(w, *self.downsample)
            sizes.append((h, w))
        return sizes

    @property
    def min_side(self):
        kernel, _, padding = self.stem
        return kernel - 2 * padding  # the smallest input that gives the stem one output


HYBRID = [dict(type='Pooling')] * 2 + [dict(type='Attention')] * 2
FAMILIES = [
    Family(PoolFormer),
    Family(PoolFormer, archs=['s12'], kwargs=dict(token_mixers=HYBRID)),
    Family(PoolFormerV2, archs=['s12', 'm36']),
    Family(IdentityFormer, archs=['s12']),
    Family(RandFormer, archs=['s12']),
    Family(ConvFormer, archs=['s18', 'b36']),
    Family(CAFormer, archs=['s18', 'm36']),
]
REFERENCE_COST = FAMILIES[0].arch_cost('s12') * MAX_SIDE**2 / 4


@functools.lru_cache(maxsize=None)
def backbone(family_index, arch):
    family = FAMILIES[family_index]
    model = family.cls(arch, **family.kwargs)
    with torch.no_grad():
        randomize_(model, seed=0)  # layer scales ~1: every block matters, unlike at init
    return model


@st.composite
def inputs(draw):
    index = draw(st.sampled_from(range(len(FAMILIES))))
    family = FAMILIES[index]
    arch = draw(st.sampled_from(family.archs))
    batch = draw(st.integers(1, 2))
    pixels = max(int(REFERENCE_COST / family.arch_cost(arch) / batch), MAX_SIDE)
    side = draw(st.integers(1, MAX_SIDE))
    other = draw(st.integers(1, max(1, min(MAX_SIDE, pixels // side))))
    h, w = (side, other) if draw(st.booleans()) else (other, side)
    return dict(family=index, arch=arch, batch=batch, h=h, w=w,
                dtype=draw(st.sampled_from(['fp32', 'bf16'])),
                training=draw(st.booleans()),
                values=draw(st.sampled_from(['normal', 'constant', 'huge'])),
                seed=draw(st.integers(0, 2**16)))


def make_input(case):
    gen = torch.Generator().manual_seed(case['seed'])
    x = torch.randn(case['batch'], 3, case['h'], case['w'], generator=gen)
    if case['values'] == 'constant':  # zero variance: the one-group norm's edge case
        x = torch.full_like(x, 0.7)
    elif case['values'] == 'huge':
        x = x * 1e4
    return x


def corner(family=0, arch='s12', batch=1, h=224, w=224, dtype='fp32', training=False,
           values='normal', seed=0):
    return example(dict(family=family, arch=arch, batch=batch, h=h, w=w, dtype=dtype,
                        training=training, values=values, seed=seed))


@settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(inputs())
@corner(h=MAX_SIDE, w=MAX_SIDE, batch=1)
@corner(h=3, w=3, dtype='bf16', training=True)
@corner(h=2, w=MAX_SIDE)
@corner(h=1, w=1, arch='m48')
@corner(arch='m48', h=MAX_SIDE, w=3, dtype='bf16', values='huge')
def test_backbone_output_follows_the_conv_arithmetic_and_is_finite(case):
    family = FAMILIES[case['family']]
    model = backbone(case['family'], case['arch']).train(case['training'])
    x = make_input(case)
    autocast = torch.autocast('cpu', dtype=torch.bfloat16, enabled=case['dtype'] == 'bf16')
    if min(case['h'], case['w']) < family.min_side:
        with pytest.raises(ValueError, match=rf'too small: .* at least {family.min_side}'):
            model(x)
        return
    with torch.no_grad(), autocast:
        outs = model(x)
    dims = family.settings(case['arch'])['embed_dims']
    expected = [(case['batch'], c, h, w) for c, (h, w) in
                zip(dims, family.sizes(case['h'], case['w']))]
    assert [tuple(o.shape) for o in outs] == expected
    for i, out in enumerate(outs):
        assert torch.isfinite(out).all(), f'stage {i}: non-finite output'
