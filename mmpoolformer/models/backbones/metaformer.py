"""The MetaFormer backbone: stem, stages of MetaFormer blocks, per-output norms.

Inside the stages features are (B, H, W, C) contiguous tensors, the layout of the official
MetaFormer code: the channel MLP and LayerNorm act on the last axis; the kernels layer runs
convolutions and pooling on that memory in the layout each device is proved right on.
Outputs are returned as (B, C, H, W) tensors, as every mmdet/mmseg neck expects.
"""
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from .. import kernels
from ..layers import DropPath, Mlp, Pooling, Scale, build_norm, build_token_mixer, is_group_norm1

GiB = 1024 ** 3


class InputTooLargeError(MemoryError):
    """An input for which a token mixer's quadratic memory cannot fit; raised up front."""


class Downsampling(nn.Module):
    """Strided convolution between (B, H, W, C) tensors, with optional norms around it.

    ``pre_norm``/``post_norm`` are ``nn.Identity`` when absent (PoolFormer has neither).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int,
                 padding: int, pre_norm: Optional[nn.Module] = None,
                 post_norm: Optional[nn.Module] = None):
        super().__init__()
        self.pre_norm = pre_norm or nn.Identity()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.post_norm = post_norm or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.post_norm(kernels.conv2d(self.pre_norm(x), self.conv))


class MetaFormerBlock(nn.Module):
    """One MetaFormer block on (B, H, W, C) tensors::

        x = res_scale1(x) + drop_path(layer_scale1(token_mixer(norm1(x))))
        x = res_scale2(x) + drop_path(layer_scale2(mlp(norm2(x))))

    Scales that are not used are ``nn.Identity``. ``token_mixing`` and ``channel_mlp``
    compute the two lines as written; the forward hands them to the kernels layer, which
    computes the same lines by a fused path where one applies (``models/kernels``).

    Args:
        dim (int): Channels C.
        token_mixer (nn.Module): Mixer on (B, H, W, C) tensors.
        mlp_ratio (float): Hidden width of the channel MLP over ``dim``.
        norm_cfg (dict): Norm of both branches (see ``build_norm``).
        act_cfg (dict): Activation of the channel MLP.
        drop (float): Dropout inside the MLP.
        drop_path (float): Stochastic depth rate of both branches.
        layer_scale_init_value (float, optional): Init of layer scale; None: no layer scale.
        res_scale_init_value (float, optional): Init of res scale; None: no res scale.
        mlp_bias (bool): Whether the MLP's linear layers have biases.
    """

    def __init__(self, dim: int, token_mixer: nn.Module, mlp_ratio: float, norm_cfg: dict,
                 act_cfg: dict, drop: float = 0., drop_path: float = 0.,
                 layer_scale_init_value: Optional[float] = None,
                 res_scale_init_value: Optional[float] = None, mlp_bias: bool = True):
        super().__init__()

        def scale(init):
            return nn.Identity() if init is None else Scale(dim, init)

        self.norm1 = build_norm(norm_cfg, dim)
        self.token_mixer = token_mixer
        self.layer_scale1 = scale(layer_scale_init_value)
        self.res_scale1 = scale(res_scale_init_value)
        self.norm2 = build_norm(norm_cfg, dim)
        self.mlp = Mlp(dim, int(mlp_ratio * dim), act_cfg, drop, bias=mlp_bias)
        self.layer_scale2 = scale(layer_scale_init_value)
        self.res_scale2 = scale(res_scale_init_value)
        self.drop_path = DropPath(drop_path)
        # What the kernels layer may fuse: pooling after a one-group GroupNorm
        # (PoolFormer's token mixing); a one-group GroupNorm, exact-GELU MLP without
        # dropout (PoolFormer's channel MLP).
        self.pool_mixing = isinstance(token_mixer, Pooling) and is_group_norm1(self.norm1)
        self.exact_gelu = isinstance(self.mlp.act, nn.GELU) and self.mlp.act.approximate == 'none'
        self.gn1_gelu_mlp = is_group_norm1(self.norm2) and self.exact_gelu and drop == 0

    def token_mixing(self, x: torch.Tensor) -> torch.Tensor:
        mixed = self.layer_scale1(self.token_mixer(self.norm1(x)))
        return self.res_scale1(x) + self.drop_path(mixed)

    def channel_mlp(self, x: torch.Tensor) -> torch.Tensor:
        return self.res_scale2(x) + self.drop_path(self.layer_scale2(self.mlp(self.norm2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return kernels.channel_mlp(self, kernels.token_mixing(self, x))


class MetaFormerStage(nn.Module):
    """An optional downsampling followed by MetaFormer blocks; (B, H, W, C) in and out."""

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module],
                 with_cp: bool = False):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.with_cp = with_cp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = kernels.checkpoint(block, x)
            else:
                x = block(x)
        return x


def _available_bytes(device) -> int:
    device = torch.device(device)
    if device.type == 'cuda':
        free, _ = torch.cuda.mem_get_info(device)
        return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
    import psutil
    return psutil.virtual_memory().available


def _per_stage(value, num_stages: int, name: str) -> list:
    """Broadcast a scalar (or a dict config) to one value per stage; check list lengths."""
    if isinstance(value, (list, tuple)):
        if len(value) != num_stages:
            raise ValueError(f'{name} has {len(value)} entries but the arch has '
                             f'{num_stages} stages: give one per stage or a single value')
        return list(value)
    return [value] * num_stages


class MetaFormer(BaseModule):
    """A MetaFormer backbone for dense prediction: a multi-scale feature pyramid.

    Stage i works at stride 4 * 2**i. Every requested output (``out_indices``) has its own
    norm, built from ``out_norm_cfg``; outputs that are not requested have no norm, so
    every parameter receives a gradient (DDP needs no ``find_unused_parameters``).

    Args:
        layers (Sequence[int]): Blocks per stage.
        embed_dims (Sequence[int]): Channels per stage.
        token_mixers (dict | Sequence[dict]): Mixer config for all stages or per stage.
        mlp_ratios (float | Sequence[float]): MLP expansion, for all stages or per stage.
        norm_cfg (dict | Sequence[dict]): Norm inside the blocks, for all or per stage.
        act_cfg (dict): Activation of the channel MLPs.
        layer_scale_init_values (float | None | Sequence): Layer-scale init per stage.
        res_scale_init_values (float | None | Sequence): Res-scale init per stage.
        mlp_bias (bool): Biases in the MLPs.
        in_channels (int): Channels of the input image. Defaults to 3.
        stem (dict): kernel_size/stride/padding of the stem conv, and optional
            ``post_norm`` config.
        downsample (dict): kernel_size/stride/padding of the downsampling convs and an
            optional ``pre_norm`` config.
        out_indices (Sequence[int]): Stages whose outputs are returned, 0..num_stages-1
            (negative indices count from the end).
        out_norm_cfg (dict): Norm applied to each returned output.
        frozen_stages (int): -1 freezes nothing; k >= 0 freezes the stem and stages
            0..k-1 (their downsampling and output norms included): no gradients, eval mode.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
        with_cp (bool): Activation checkpointing of every block.
        drop_rate (float): Dropout in the MLPs.
        drop_path_rate (float): Stochastic depth, ramped linearly over all blocks.
        quadratic_memory_limit (float, optional): GiB that the (N, N) tensors of attention
            with dropout or random mixing may take; None (default): the memory available
            on the input's device when the forward starts. Inputs above it are refused
            before any computation (``check_input_size``).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            prefix=None)`` loads ImageNet weights (see ``init_weights``).
    """

    def __init__(self,
                 layers: Sequence[int],
                 embed_dims: Sequence[int],
                 token_mixers: Union[dict, Sequence[dict]],
                 mlp_ratios: Union[float, Sequence[float]] = 4,
                 norm_cfg: Union[dict, Sequence[dict]] = dict(type='GN', num_groups=1),
                 act_cfg: dict = dict(type='GELU'),
                 layer_scale_init_values=None,
                 res_scale_init_values=None,
                 mlp_bias: bool = True,
                 in_channels: int = 3,
                 stem: dict = dict(kernel_size=7, stride=4, padding=2),
                 downsample: dict = dict(kernel_size=3, stride=2, padding=1),
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 out_norm_cfg: dict = dict(type='GN', num_groups=1),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 quadratic_memory_limit: Optional[float] = None,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg=init_cfg)
        num_stages = len(layers)
        if len(embed_dims) != num_stages:
            raise ValueError(f'layers has {num_stages} stages but embed_dims has '
                             f'{len(embed_dims)}')
        self.num_stages = num_stages
        self.embed_dims = list(embed_dims)
        self.out_indices = self._check_out_indices(out_indices, num_stages)
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be an int from -1 (freeze nothing) to '
                             f'{num_stages} (freeze all stages), got {frozen_stages!r}')
        self.frozen_stages = frozen_stages
        self.norm_eval = norm_eval
        if not 0 <= drop_path_rate < 1 or not 0 <= drop_rate < 1:
            raise ValueError('drop_rate and drop_path_rate must be in [0, 1), got '
                             f'{drop_rate} and {drop_path_rate}')

        mixers = _per_stage(token_mixers, num_stages, 'token_mixers')
        mlp_ratios = _per_stage(mlp_ratios, num_stages, 'mlp_ratios')
        norm_cfgs = _per_stage(norm_cfg, num_stages, 'norm_cfg')
        ls_inits = _per_stage(layer_scale_init_values, num_stages, 'layer_scale_init_values')
        rs_inits = _per_stage(res_scale_init_values, num_stages, 'res_scale_init_values')

        stem = dict(stem)
        stem_norm = stem.pop('post_norm', None)
        self.stem = Downsampling(
            in_channels, embed_dims[0], **stem,
            post_norm=build_norm(stem_norm, embed_dims[0]) if stem_norm else None)
        self.min_input_size = stem['kernel_size'] - 2 * stem['padding']
        self.quadratic_memory_limit = quadratic_memory_limit

        total = sum(layers)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        downsample = dict(downsample)
        down_norm = downsample.pop('pre_norm', None)
        self._geometry = [(stem['kernel_size'], stem['stride'], stem['padding'])] + \
            [(downsample['kernel_size'], downsample['stride'], downsample['padding'])] * \
            (num_stages - 1)
        self.stages = nn.ModuleList()
        for i in range(num_stages):
            dim = embed_dims[i]
            if i == 0:
                down = nn.Identity()
            else:
                down = Downsampling(
                    embed_dims[i - 1], dim, **downsample,
                    pre_norm=build_norm(down_norm, embed_dims[i - 1]) if down_norm else None)
            first = sum(layers[:i])
            blocks = [
                MetaFormerBlock(
                    dim, build_token_mixer(mixers[i], dim), mlp_ratios[i], norm_cfgs[i],
                    act_cfg, drop=drop_rate, drop_path=rates[first + j],
                    layer_scale_init_value=ls_inits[i],
                    res_scale_init_value=rs_inits[i], mlp_bias=mlp_bias)
                for j in range(layers[i])
            ]
            self.stages.append(MetaFormerStage(down, blocks, with_cp=with_cp))

        self.out_norms = nn.ModuleDict(
            {str(i): build_norm(out_norm_cfg, embed_dims[i]) for i in self.out_indices})
        # Only attention and random mixing can need (N, N) tensors; without them the
        # forward skips the memory check altogether.
        self._has_quadratic_mixers = any(
            hasattr(block.token_mixer, 'quadratic_bytes')
            for stage in self.stages for block in stage.blocks)
        self._freeze_stages()

    @staticmethod
    def _check_out_indices(out_indices, num_stages):
        if isinstance(out_indices, int):
            out_indices = [out_indices]
        indices = list(out_indices)
        if not indices or any(not isinstance(i, int) or not -num_stages <= i < num_stages
                              for i in indices):
            raise ValueError(f'out_indices counts stages: each must be an int in '
                             f'0..{num_stages - 1} (or {-num_stages}..-1), got '
                             f'{tuple(out_indices)!r}')
        normalised = sorted({i % num_stages for i in indices})
        if len(normalised) != len(indices):
            raise ValueError(f'out_indices has a stage twice: {tuple(out_indices)!r}')
        return tuple(normalised)

    @property
    def out_channels(self) -> list:
        """Channels of each returned feature map, in output order."""
        return [self.embed_dims[i] for i in self.out_indices]

    def stage_sizes(self, height: int, width: int) -> list:
        """(H_i, W_i) of every stage for an input of height x width."""
        sizes = []
        for k, s, p in self._geometry:
            height, width = (height + 2 * p - k) // s + 1, (width + 2 * p - k) // s + 1
            sizes.append((height, width))
        return sizes

    def quadratic_memory(self, batch: int, height: int, width: int, elem: int = 4,
                         training: bool = False) -> list:
        """Bytes of (N, N) tensors per stage that hold them: [(stage, mixer, N, bytes)].

        In training the tensors of every block are kept for the backward (of one block at
        a time with ``with_cp``); in inference only one block's exist at a time.
        """
        found = []
        for i, (h, w) in enumerate(self.stage_sizes(height, width)):
            stage = self.stages[i]
            need = [b.token_mixer.quadratic_bytes(batch, h, w, elem, training)
                    for b in stage.blocks if hasattr(b.token_mixer, 'quadratic_bytes')]
            if not need or not max(need):
                continue
            keep_all = training and not stage.with_cp
            found.append((i, type(stage.blocks[0].token_mixer).__name__, h * w,
                          sum(need) if keep_all else max(need)))
        return found

    def check_input_size(self, batch: int, height: int, width: int, elem: int = 4,
                         training: bool = False, device='cpu'):
        """Raise InputTooLargeError when the quadratic tensors of this input cannot fit.

        Cheap arithmetic; ``forward`` calls it before computing anything, and tools can
        call it at build time with a config's largest image size.
        """
        needs = self.quadratic_memory(batch, height, width, elem, training)
        total = sum(n[-1] for n in needs)
        if total < 256 * 1024 ** 2:
            return
        limit = self.quadratic_memory_limit
        limit = _available_bytes(device) if limit is None else limit * GiB
        if total <= limit:
            return
        detail = '; '.join(f'stage {i} ({name}, {n:,} tokens): {b / GiB:.1f} GiB'
                           for i, name, n, b in needs)
        raise InputTooLargeError(
            f'{type(self).__name__}: a batch of {batch} at {height}x{width} needs '
            f'{total / GiB:.1f} GiB for (tokens x tokens) mixing tensors ({detail}), more '
            f'than the {limit / GiB:.1f} GiB available. Use attention or random mixing only '
            f'at strides 16 and 32, a smaller input or batch, attn_drop=0 (fused attention, '
            f'linear memory) or with_cp=True.')

    def forward(self, x: torch.Tensor) -> tuple:
        """(B, in_channels, H, W) image -> tuple of (B, C_i, H_i, W_i), one per out index.

        H_i follows the conv arithmetic: stem floor((H + 2p - k) / s) + 1, then each
        downsampling floor((H_i - 1) / 2) + 1.
        """
        if x.dim() != 4:
            raise ValueError(f'expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}')
        if min(x.shape[-2:]) < self.min_input_size:
            raise ValueError(f'input of size {tuple(x.shape[-2:])} is too small: the stem '
                             f'needs height and width of at least {self.min_input_size}')
        if self._has_quadratic_mixers:
            elem = x.element_size()
            if torch.is_autocast_enabled(x.device.type):
                elem = torch.finfo(torch.get_autocast_dtype(x.device.type)).bits // 8
            self.check_input_size(x.shape[0], x.shape[2], x.shape[3], elem,
                                  self.training and torch.is_grad_enabled(), x.device)
        x = x.permute(0, 2, 3, 1).contiguous()
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                outs.append(self.out_norms[str(i)](x).permute(0, 3, 1, 2))
        return tuple(outs)

    # ------------------------------------------------------------------ training state
    def _frozen_modules(self):
        if self.frozen_stages < 0:
            return []
        modules = [self.stem]
        for i in range(self.frozen_stages):
            modules.append(self.stages[i])
            if str(i) in self.out_norms:
                modules.append(self.out_norms[str(i)])
        return modules

    def _freeze_stages(self):
        for module in self._frozen_modules():
            module.eval()
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        self._freeze_stages()
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, _BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ weights
    def _default_init(self):
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                trunc_normal_(m.weight, std=.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def init_weights(self):
        """Initialise; with ``init_cfg=dict(type='Pretrained', ...)`` load ImageNet weights.

        The checkpoint may be in the official, mmpretrain or timm layout (see
        ``mmpoolformer.checkpoint``). Missing parameters other than the output norms, or a
        shape mismatch, raise an error; the missing output norms and the unused classifier
        keys are logged.
        """
        from ...checkpoint import load_pretrained  # the checkpoint package imports models

        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self._default_init()
            load_pretrained(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                            map_location=cfg.get('map_location', 'cpu'))
        else:
            self._default_init()
            super().init_weights()
        self._is_init = True
