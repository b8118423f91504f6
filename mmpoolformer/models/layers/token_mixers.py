"""Token mixers: modules that mix information across positions of a (B, H, W, C) tensor.

Where each is practical for dense prediction (N = H*W tokens of a stage; at stride 4 a
1333 x 800 image has N = 200 x 333 = 66,600):
- Identity, Pooling, DWConv, SepConv: linear in N, any stage, any input.
- Attention: compute quadratic in N, memory linear (fused kernel) unless ``attn_drop > 0``
  in training. Use it at strides 16 and 32 (CAFormer, the hybrid PoolFormer); at stride 4
  on a detection input a single block costs ~1 TFLOP.
- RandomMixing: an (N, N) matrix, so memory quadratic: strides 16 and 32 only.
The backbone checks the quadratic memory of a given input before computing anything.
"""
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...registry import TOKEN_MIXERS, lookup
from .. import kernels
from .activations import build_act


@TOKEN_MIXERS.register_module()
class Pooling(nn.Module):
    """PoolFormer's mixer: ``avg_pool(x) - x``, stride 1, padding excluded from the average."""

    def __init__(self, dim: int = None, pool_size: int = 3):
        super().__init__()
        if not isinstance(pool_size, int) or pool_size < 1 or pool_size % 2 == 0:
            raise ValueError(f'pool_size must be an odd positive int (3 in the paper), '
                             f'got {pool_size!r}: an even size would change the feature '
                             f'map size')
        self.pool_size = pool_size

    def pool(self, x: torch.Tensor) -> torch.Tensor:
        """The average pool alone, (B, H, W, C) -> (B, H, W, C)."""
        return kernels.avg_pool(x, self.pool_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(x) - x

    def extra_repr(self) -> str:
        return f'pool_size={self.pool_size}'


@TOKEN_MIXERS.register_module(name='Identity')
class IdentityMixer(nn.Identity):
    """No token mixing (IdentityFormer); accepts and ignores ``dim``."""

    def __init__(self, dim: int = None):
        super().__init__()


@TOKEN_MIXERS.register_module()
class DWConv(nn.Module):
    """Depthwise convolution as the token mixer (the PoolFormer paper's ablation).

    ``kernel_size`` x ``kernel_size``, stride 1, 'same' padding, one filter per channel.
    """

    def __init__(self, dim: int, kernel_size: int = 3, bias: bool = True):
        super().__init__()
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f'DWConv kernel_size must be an odd positive int, got '
                             f'{kernel_size!r}')
        self.conv = nn.Conv2d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim,
                              bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.conv2d(x, self.conv)


@TOKEN_MIXERS.register_module()
class SepConv(nn.Module):
    """ConvFormer's mixer, MobileNetV2's inverted separable convolution::

        pwconv1 (C -> 2C, linear) -> act1 (StarReLU) -> 7x7 depthwise conv -> act2 -> pwconv2

    No biases by default, as in the official definition.
    """

    def __init__(self, dim: int, expansion_ratio: float = 2,
                 act1_cfg: dict = dict(type='StarReLU'), act2_cfg: Optional[dict] = None,
                 bias: bool = False, kernel_size: int = 7, padding: int = 3):
        super().__init__()
        mid = int(expansion_ratio * dim)
        self.pwconv1 = nn.Linear(dim, mid, bias=bias)
        self.act1 = build_act(act1_cfg) if act1_cfg else nn.Identity()
        self.dwconv = nn.Conv2d(mid, mid, kernel_size, padding=padding, groups=mid, bias=bias)
        self.act2 = build_act(act2_cfg) if act2_cfg else nn.Identity()
        self.pwconv2 = nn.Linear(mid, dim, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(kernels.linear(x, self.pwconv1))
        x = kernels.conv2d(x, self.dwconv)
        return kernels.linear(self.act2(x), self.pwconv2)


@TOKEN_MIXERS.register_module()
class Attention(nn.Module):
    """Multi-head self-attention over all H*W positions (MetaFormer baselines' definition).

    ``num_heads = dim // head_dim`` (at least 1), qkv and proj without bias by default. It
    runs through ``F.scaled_dot_product_attention``: with ``attn_drop=0`` (the default)
    torch picks a fused kernel whose memory grows linearly with the number of tokens, so
    any detector input fits; compute still grows quadratically. With ``attn_drop > 0`` in
    training the full (heads, N, N) matrix is materialised; ``quadratic_bytes`` says how
    much, and the backbone refuses inputs for which it cannot fit (see
    ``MetaFormer.check_input_size``).
    """

    def __init__(self, dim: int, head_dim: int = 32, num_heads: Optional[int] = None,
                 qkv_bias: bool = False, attn_drop: float = 0., proj_drop: float = 0.,
                 proj_bias: bool = False):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(num_heads or dim // head_dim, 1)
        self.attention_dim = self.num_heads * head_dim
        self.qkv = nn.Linear(dim, 3 * self.attention_dim, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(self.attention_dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop) if proj_drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        n = h * w
        qkv = kernels.linear(x, self.qkv).reshape(b, n, 3, self.num_heads,
                                                         self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.)
        out = out.transpose(1, 2).reshape(b, h, w, self.attention_dim)
        return self.proj_drop(kernels.linear(out, self.proj))

    def quadratic_bytes(self, batch: int, height: int, width: int, elem: int,
                        training: bool) -> int:
        """Memory of the (B, heads, N, N) tensors this mixer materialises, in bytes."""
        if not (training and self.attn_drop > 0):
            return 0  # fused kernel: linear in N
        # scores, probabilities, dropout mask and dropped probabilities (measured: ~3.7x).
        n = height * width
        return 4 * batch * self.num_heads * n * n * elem


@TOKEN_MIXERS.register_module()
class RandomMixing(nn.Module):
    """RandFormer's mixer: a frozen random row-stochastic matrix mixes the tokens.

    The official matrix is ``softmax(rand(N0, N0))`` for a fixed token count N0 (196 = 14 x
    14 at stage 3 of a 224 x 224 input): it only applies to that one resolution. Here the
    matrix is read as a mixing *field* on a sqrt(N0) x sqrt(N0) grid of query positions
    times the same grid of key positions, both spanning the image. For an H x W feature map
    it is resampled bilinearly along the key grid and then along the query grid to
    (H*W, H*W), and each row is renormalised to sum to 1, so every output token stays a
    convex combination of input tokens (the property of the original softmax rows). At the
    native grid the official matrix is used unchanged, so official checkpoints give the
    official outputs at 224 x 224. The resampled matrix costs (H*W)^2 numbers; see
    ``quadratic_bytes``.
    """

    def __init__(self, dim: int = None, num_tokens: int = 196):
        super().__init__()
        side = int(round(num_tokens ** 0.5))
        if side * side != num_tokens:
            raise ValueError(f'RandomMixing num_tokens must be a square number (a side x '
                             f'side token grid, e.g. 196 or 49), got {num_tokens}')
        self.grid = side
        self.random_matrix = nn.Parameter(
            torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1), requires_grad=False)

    def mixing_matrix(self, height: int, width: int) -> torch.Tensor:
        """The (H*W, H*W) matrix for an H x W map (the stored one at the native grid)."""
        matrix = self.random_matrix
        if (height, width) == (self.grid, self.grid):
            return matrix
        g, n0, n = self.grid, self.grid * self.grid, height * width
        resample = dict(size=(height, width), mode='bilinear', align_corners=False,
                        antialias=height < g or width < g)
        keys = F.interpolate(matrix.reshape(n0, 1, g, g), **resample).reshape(n0, n)
        both = F.interpolate(keys.t().reshape(n, 1, g, g), **resample).reshape(n, n).t()
        return both / both.sum(-1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        matrix = self.mixing_matrix(h, w).to(x.dtype)
        return torch.matmul(matrix, x.reshape(b, h * w, c)).view(b, h, w, c)

    def quadratic_bytes(self, batch: int, height: int, width: int, elem: int,
                        training: bool) -> int:
        """Memory of the resampled (N, N) mixing matrix, in bytes."""
        n = height * width
        return n * n * elem if (height, width) != (self.grid, self.grid) else 0

    def extra_repr(self) -> str:
        return f'grid={self.grid}x{self.grid}'


def build_token_mixer(cfg: dict, dim: int) -> nn.Module:
    """Build a token mixer from ``dict(type=NAME, **kwargs)`` for ``dim`` channels.

    NAME is looked up in ``mmpoolformer.registry.TOKEN_MIXERS``; the mixer's class gets
    ``dim`` and the kwargs.
    """
    cls, kwargs = lookup(TOKEN_MIXERS, cfg, 'token mixer')
    try:
        return cls(dim=dim, **kwargs)
    except TypeError as e:
        raise TypeError(f'bad token mixer config {dict(cfg)}: {e}') from None
