"""A plain MetaFormer-baselines model written from the official definition: the test oracle.

It follows sail-sg/metaformer's ``metaformer_baselines.py`` line by line in behaviour:
(B, H, W, C) tensors, ``LayerNormGeneral`` computing mean and variance by hand, explicit
softmax attention, ``einsum`` random mixing; and its state_dict uses the official keys
(``downsample_layers.{i}``, ``stages.{i}.{j}``). For dense prediction it adds a LayerNorm
per output stage under ``out_norms.{i}`` (the baselines have no official dense variant).
Also builds the paper's hybrid PoolFormer (GroupNorm, GELU, layer scale) when given the
PoolFormer settings. Do not optimise it.
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class RefLayerNormGeneral(nn.Module):

    def __init__(self, dim, normalized_dim=(-1, ), bias=True, eps=1e-5):
        super().__init__()
        self.normalized_dim = normalized_dim
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if bias else None

    def forward(self, x):
        c = x - x.mean(self.normalized_dim, keepdim=True)
        s = c.pow(2).mean(self.normalized_dim, keepdim=True)
        x = c / torch.sqrt(s + self.eps) * self.weight
        return x if self.bias is None else x + self.bias


class RefStarReLU(nn.Module):

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return self.scale * F.relu(x) ** 2 + self.bias


class RefScale(nn.Module):

    def __init__(self, dim, init):
        super().__init__()
        self.scale = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.scale


class RefPooling(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.pool = nn.AvgPool2d(3, 1, 1, count_include_pad=False)

    def forward(self, x):
        return self.pool(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) - x


class RefSepConv(nn.Module):

    def __init__(self, dim):
        super().__init__()
        self.pwconv1 = nn.Linear(dim, 2 * dim, bias=False)
        self.act1 = RefStarReLU()
        self.dwconv = nn.Conv2d(2 * dim, 2 * dim, 7, padding=3, groups=2 * dim, bias=False)
        self.pwconv2 = nn.Linear(2 * dim, dim, bias=False)

    def forward(self, x):
        x = self.act1(self.pwconv1(x))
        x = self.dwconv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.pwconv2(x)


class RefAttention(nn.Module):

    def __init__(self, dim, head_dim=32):
        super().__init__()
        self.head_dim = head_dim
        self.num_heads = max(dim // head_dim, 1)
        self.qkv = nn.Linear(dim, 3 * self.num_heads * head_dim, bias=False)
        self.proj = nn.Linear(self.num_heads * head_dim, dim, bias=False)

    def forward(self, x):
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        attn = ((q @ k.transpose(-2, -1)) * self.head_dim ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, h, w, -1))


class RefRandomMixing(nn.Module):

    def __init__(self, dim, num_tokens=196):
        super().__init__()
        self.random_matrix = nn.Parameter(
            torch.softmax(torch.rand(num_tokens, num_tokens), dim=-1), requires_grad=False)

    def forward(self, x):
        b, h, w, c = x.shape
        x = torch.einsum('mn, bnc -> bmc', self.random_matrix, x.reshape(b, h * w, c))
        return x.reshape(b, h, w, c)


class RefIdentity(nn.Identity):

    def __init__(self, dim):
        super().__init__()


class RefMlp(nn.Module):

    def __init__(self, dim, bias, act):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim, bias=bias)
        self.act = act()
        self.fc2 = nn.Linear(4 * dim, dim, bias=bias)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class RefBlock(nn.Module):

    def __init__(self, dim, mixer, norm, mlp_bias, act, layer_scale, res_scale):
        super().__init__()
        self.norm1 = norm(dim)
        self.token_mixer = mixer(dim)
        self.layer_scale1 = RefScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.res_scale1 = RefScale(dim, res_scale) if res_scale else nn.Identity()
        self.norm2 = norm(dim)
        self.mlp = RefMlp(dim, mlp_bias, act)
        self.layer_scale2 = RefScale(dim, layer_scale) if layer_scale else nn.Identity()
        self.res_scale2 = RefScale(dim, res_scale) if res_scale else nn.Identity()

    def forward(self, x):
        x = self.res_scale1(x) + self.layer_scale1(self.token_mixer(self.norm1(x)))
        return self.res_scale2(x) + self.layer_scale2(self.mlp(self.norm2(x)))


class RefDownsampling(nn.Module):

    def __init__(self, cin, cout, k, s, p, pre_norm=None, post_norm=None, pre_permute=True):
        super().__init__()
        self.pre_norm = pre_norm(cin) if pre_norm else nn.Identity()
        self.pre_permute = pre_permute
        self.conv = nn.Conv2d(cin, cout, k, s, p)
        self.post_norm = post_norm(cout) if post_norm else nn.Identity()

    def forward(self, x):
        x = self.pre_norm(x)
        if self.pre_permute:
            x = x.permute(0, 3, 1, 2)
        return self.post_norm(self.conv(x).permute(0, 2, 3, 1))


MIXERS = {'Identity': RefIdentity, 'Pooling': RefPooling, 'SepConv': RefSepConv,
          'Attention': RefAttention}


def _mixer(name):
    if name.startswith('RandomMixing'):
        tokens = int(name.split(':')[1])
        return lambda dim: RefRandomMixing(dim, tokens)
    return MIXERS[name]


class OfficialMetaFormer(nn.Module):
    """Official MetaFormer baseline (or hybrid PoolFormer) returning all 4 stage outputs.

    Args:
        depths, dims: per stage.
        mixers: per stage, names from ``MIXERS`` or ``'RandomMixing:<num_tokens>'``.
        block_norm: ``'ln'`` (over C, no bias), ``'gn1'`` (over H, W, C, no bias) or
            ``'gn1_affine'`` (PoolFormer's GroupNorm(1), eps 1e-5, with bias).
        poolformer_v1: PoolFormer settings (no stem/downsampling norms, GELU MLPs with
            bias, layer scale ``layer_scale`` and no res scale).
    """

    def __init__(self, depths, dims, mixers, block_norm='ln', poolformer_v1=False,
                 layer_scale=1e-5):
        super().__init__()
        ln = lambda d: RefLayerNormGeneral(d, bias=False, eps=1e-6)  # noqa: E731
        if block_norm == 'ln':
            norm = ln
        elif block_norm == 'gn1':
            norm = lambda d: RefLayerNormGeneral(  # noqa: E731
                d, normalized_dim=(1, 2, 3), bias=False, eps=1e-6)
        else:
            norm = lambda d: RefLayerNormGeneral(  # noqa: E731
                d, normalized_dim=(1, 2, 3), bias=True, eps=1e-5)
        down_dims = [3] + list(dims)
        self.downsample_layers = nn.ModuleList()
        for i in range(4):
            if i == 0:
                layer = RefDownsampling(3, dims[0], 7, 4, 2, pre_permute=False,
                                        post_norm=None if poolformer_v1 else ln)
            else:
                layer = RefDownsampling(down_dims[i], dims[i], 3, 2, 1,
                                        pre_norm=None if poolformer_v1 else ln)
            self.downsample_layers.append(layer)
        self.stages = nn.ModuleList()
        for i in range(4):
            self.stages.append(nn.Sequential(*[
                RefBlock(dims[i], _mixer(mixers[i]), norm, mlp_bias=poolformer_v1,
                         act=nn.GELU if poolformer_v1 else RefStarReLU,
                         layer_scale=layer_scale if poolformer_v1 else None,
                         res_scale=None if poolformer_v1 or i < 2 else 1.0)
                for _ in range(depths[i])
            ]))
        out_norm = norm if poolformer_v1 else lambda d: nn.LayerNorm(d, eps=1e-6)
        self.out_norms = nn.ModuleList(out_norm(d) for d in dims)

    def forward(self, x):
        outs = []
        for i in range(4):
            x = self.stages[i](self.downsample_layers[i](x))
            outs.append(self.out_norms[i](x).permute(0, 3, 1, 2))
        return outs
