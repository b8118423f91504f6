"""Token mixers: modules that mix information across positions of a (B, H, W, C) tensor."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class Pooling(nn.Module):
    """PoolFormer's mixer: ``avg_pool(x) - x``, stride 1, padding excluded from the average.

    The pooling runs on a channels-last view of the (B, H, W, C) input, which on CPU is
    about 10x faster than on NCHW memory for ``count_include_pad=False``.
    """

    def __init__(self, dim: int = None, pool_size: int = 3):
        super().__init__()
        if not isinstance(pool_size, int) or pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f'pool_size must be an odd positive int (3 in the paper), '
                             f'got {pool_size!r}: an even size would change the feature '
                             f'map size')
        self.pool_size = pool_size

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The average pool alone, (B, H, W, C) -> (B, H, W, C)."""
        pooled = F.avg_pool2d(x.permute(0, 3, 1, 2), self.pool_size, stride=1,
                              padding=self.pool_size // 2, count_include_pad=False)
        return pooled.permute(0, 2, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x

    def extra_repr(self) -> str:
        return f'pool_size={self.pool_size}'


class IdentityMixer(nn.Identity):
    """No token mixing (IdentityFormer); accepts and ignores ``dim``."""

    def __init__(self, dim: int = None):
        super().__init__()


TOKEN_MIXERS = {
    'Pooling': Pooling,
    'Identity': IdentityMixer,
}


def build_token_mixer(cfg: dict, dim: int) -> nn.Module:
    """Build a token mixer from ``dict(type=NAME, **kwargs)`` for ``dim`` channels."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        raise TypeError(f'a token mixer config must be a dict with a "type" key, got {cfg!r}')
    cfg = dict(cfg)
    mixer_type = cfg.pop('type')
    if mixer_type not in TOKEN_MIXERS:
        raise KeyError(f'unknown token mixer {mixer_type!r}; valid mixers: '
                       f'{", ".join(sorted(TOKEN_MIXERS))}')
    try:
        return TOKEN_MIXERS[mixer_type](dim=dim, **cfg)
    except TypeError as e:
        raise TypeError(f'bad token mixer config {dict(type=mixer_type, **cfg)}: {e}') from None
