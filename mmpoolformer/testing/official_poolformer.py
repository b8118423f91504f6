"""A plain, readable PoolFormer written from the official definition: the test oracle.

This is the reference that the package's optimised backbone is checked against (tests) and
timed against (tools/analysis/benchmark_backbone.py). It is deliberately naive: NCHW
tensors, ``nn.GroupNorm``, ``nn.AvgPool2d``, 1x1 convolutions, exactly as in the paper's
code, and its state_dict uses the official key layout (``patch_embed``, interleaved
``network``, ``layer_scale_1``) with the dense-prediction output norms ``norm{2*stage}``.
Do not optimise it.
"""
import torch
import torch.nn as nn


class OfficialPooling(nn.Module):

    def __init__(self, pool_size=3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2,
                                 count_include_pad=False)

    def forward(self, x):
        return self.pool(x) - x


class OfficialMlp(nn.Module):

    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, hidden, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden, dim, 1)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class OfficialBlock(nn.Module):

    def __init__(self, dim, pool_size=3, mlp_ratio=4, layer_scale_init_value=1e-5):
        super().__init__()
        self.norm1 = nn.GroupNorm(1, dim)
        self.token_mixer = OfficialPooling(pool_size)
        self.norm2 = nn.GroupNorm(1, dim)
        self.mlp = OfficialMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim))
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim))

    def forward(self, x):
        ls1 = self.layer_scale_1.unsqueeze(-1).unsqueeze(-1)
        ls2 = self.layer_scale_2.unsqueeze(-1).unsqueeze(-1)
        x = x + ls1 * self.token_mixer(self.norm1(x))
        x = x + ls2 * self.mlp(self.norm2(x))
        return x


class OfficialEmbed(nn.Module):

    def __init__(self, in_chans, dim, kernel_size, stride, padding):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size, stride, padding)

    def forward(self, x):
        return self.proj(x)


class OfficialPoolFormer(nn.Module):
    """The dense-prediction PoolFormer: returns the normed outputs of ``out_indices``."""

    def __init__(self, layers, embed_dims, mlp_ratios=4, layer_scale_init_value=1e-5,
                 pool_size=3, in_chans=3, out_indices=(0, 1, 2, 3)):
        super().__init__()
        self.out_indices = tuple(out_indices)
        self.patch_embed = OfficialEmbed(in_chans, embed_dims[0], 7, 4, 2)
        network = []
        for i, depth in enumerate(layers):
            network.append(nn.Sequential(*[
                OfficialBlock(embed_dims[i], pool_size, mlp_ratios, layer_scale_init_value)
                for _ in range(depth)
            ]))
            if i < len(layers) - 1:
                network.append(OfficialEmbed(embed_dims[i], embed_dims[i + 1], 3, 2, 1))
        self.network = nn.ModuleList(network)
        for i in self.out_indices:
            self.add_module(f'norm{2 * i}', nn.GroupNorm(1, embed_dims[i]))

    def forward(self, x):
        x = self.patch_embed(x)
        outs = []
        for idx, layer in enumerate(self.network):
            x = layer(x)
            if idx % 2 == 0 and idx // 2 in self.out_indices:
                outs.append(getattr(self, f'norm{idx}')(x))
        return tuple(outs)


def official_from_arch(arch: dict, **kwargs) -> OfficialPoolFormer:
    """The oracle for one of ``PoolFormer.arch_settings``' entries."""
    return OfficialPoolFormer(arch['layers'], arch['embed_dims'], arch['mlp_ratios'],
                              arch['layer_scale_init_value'], **kwargs)


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every parameter random values, layer scales and norm affines far from init.

    Scales (layer/res scale, StarReLU's) and norm weights go to [0.5, 1.5). RandFormer's
    fixed row-stochastic ``random_matrix`` is left as it is: it is not a learned weight.
    """
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith('random_matrix'):
            continue
        if p.dim() == 1 and ('norm' in name or 'scale' in name):
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)  # in [0.5, 1.5)
        elif p.dim() == 1:  # biases
            p.copy_(0.1 * torch.randn(p.shape, generator=gen))
        else:
            p.copy_(torch.randn(p.shape, generator=gen) / p[0].numel() ** 0.5)
    return model


def official_imagenet_checkpoint(arch: dict, seed: int = 0) -> dict:
    """A random official-layout classification state_dict: backbone, final norm and head."""
    sd = dict(randomize_(official_from_arch(arch, out_indices=()), seed).state_dict())
    last = arch['embed_dims'][-1]
    gen = torch.Generator().manual_seed(seed)
    sd['norm.weight'], sd['norm.bias'] = torch.rand(last, generator=gen), torch.rand(last)
    sd['head.weight'], sd['head.bias'] = torch.randn(1000, last), torch.randn(1000)
    return sd


def to_mmpretrain_layout(sd: dict) -> dict:
    """An official state_dict as mmpretrain saves it: ``backbone.``/``head.fc.`` keys."""
    return {'meta': {'mmpretrain_version': '1.2.0'},
            'state_dict': {('head.fc.' + k[5:] if k.startswith('head.') else 'backbone.' + k): v
                           for k, v in sd.items()}}
