"""The MetaFormer backbone: stem, stages of MetaFormer blocks, per-output norms.

Inside the stages features are (B, H, W, C) contiguous tensors, the layout of the official
MetaFormer code: the channel MLP and LayerNorm act on the last axis; the kernels layer runs
convolutions and pooling on that memory in the layout each device is proved right on.
Outputs are returned as (B, C, H, W) tensors, as every mmdet/mmseg neck expects.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import torch
import torch.nn as nn
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_
from torch.nn.modules.batchnorm import _BatchNorm

from ... import compat
from .. import kernels
from ..compile import compile_options, compiled_runner
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
    """An optional downsampling followed by MetaFormer blocks; (B, H, W, C) in and out.

    ``compile_options``: torch.compile options of the blocks (None: eager); see
    ``mmpoolformer.models.compile``.
    """

    def __init__(self, downsample: nn.Module, blocks: Sequence[nn.Module],
                 with_cp: bool = False, compile_options: Optional[dict] = None):
        super().__init__()
        self.downsample = downsample
        self.blocks = nn.Sequential(*blocks)
        self.with_cp = with_cp
        self.compile_options = compile_options

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.downsample(x)
        for block in self.blocks:
            run = compiled_runner(self.compile_options, block)
            if self.with_cp and self.training and torch.is_grad_enabled():
                x = kernels.checkpoint(run, x)
            else:
                x = run(x)
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


# The convolutions between stages, the same in every family (the official definitions).
STEM = dict(kernel_size=7, stride=4, padding=2)
DOWNSAMPLE = dict(kernel_size=3, stride=2, padding=1)


@dataclass(frozen=True)
class FamilySpec:
    """What makes a MetaFormer family, stated once per backbone class.

    Layer scale comes from the arch's ``layer_scale_init_value`` (families without it in
    their ``arch_settings`` have none).
    """
    token_mixers: Union[dict, tuple]  # one config for all stages, or one per stage
    norm_cfg: dict  # the blocks' norms
    act_cfg: dict  # the channel MLPs' activation
    mlp_bias: bool
    res_scale_init_values: tuple = (None, None, None, None)
    stem_norm: Optional[dict] = None  # after the stem convolution
    downsample_norm: Optional[dict] = None  # before each downsampling convolution
    out_norm_cfg: Optional[dict] = None  # None: the blocks' norm
    mlp_ratio: float = 4


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


def _with_pool_size(mixers, pool_size: int, family: str):
    """The mixer configs with ``pool_size`` set on every Pooling mixer."""
    as_list = list(mixers) if isinstance(mixers, (list, tuple)) else [mixers]
    if not any(isinstance(m, dict) and m.get('type') == 'Pooling' for m in as_list):
        raise ValueError(f'pool_size={pool_size!r} applies to Pooling mixers, and this '
                         f'{family} has none: {mixers}')
    out = [dict(m, pool_size=pool_size) if isinstance(m, dict) and m.get('type') == 'Pooling'
           else m for m in as_list]
    return out if isinstance(mixers, (list, tuple)) else out[0]


class MetaFormer(BaseModule):
    """A MetaFormer backbone for dense prediction: a multi-scale feature pyramid.

    The one constructor of every family: a subclass states its sizes (``arch_settings``)
    and its ``family`` (:class:`FamilySpec`), nothing else. Stage i works at stride
    4 * 2**i. Every requested output (``out_indices``) has its own norm; outputs that are
    not requested have none, so every parameter receives a gradient (DDP needs no
    ``find_unused_parameters``). Arguments left at None take the family's value.

    Args:
        arch (str | dict, optional): A name from ``arch_settings`` (default: the first) or
            a dict with the same keys.
        token_mixers (dict | Sequence[dict], optional): Mixer config (a type of
            ``mmpoolformer.registry.TOKEN_MIXERS``) for all stages or one per stage.
        pool_size (int, optional): Window of the Pooling mixers (odd; theirs is 3).
        in_channels (int): Channels of the input image. Defaults to 3.
        out_indices (Sequence[int]): Stages whose outputs are returned, 0..3 (negative
            indices count from the end). Defaults to (0, 1, 2, 3): strides 4, 8, 16, 32.
        frozen_stages (int): -1 (default) freezes nothing; k >= 0 freezes the stem and
            stages 0..k-1 (their downsampling and output norms included): no gradients,
            eval mode.
        norm_eval (bool): Keep BatchNorm layers in eval mode while training.
        with_cp (bool): Activation checkpointing of every block.
        drop_rate (float): Dropout in the MLPs. Defaults to 0.
        drop_path_rate (float): Stochastic depth, ramped linearly over all blocks.
        norm_cfg (dict | Sequence[dict], optional): The blocks' norms, for all stages or
            per stage (a type of ``NORM_LAYERS``).
        act_cfg (dict, optional): The channel MLPs' activation.
        out_norm_cfg (dict, optional): Norm of each returned output (None: the family's,
            which for PoolFormer is ``norm_cfg``).
        res_scale_init_values (Sequence, optional): Res-scale init per stage (None: no res
            scale in that stage).
        out_channels_last (bool): Return each output as a channels-last (B, C, H, W) view
            of the stages' memory (no copy; the neck's and head's convolutions then run
            channels-last, faster on the CPU) instead of contiguous NCHW (the default).
            Every mmdet/mmseg consumer handles strides except mmcv 2.1's RoIAlign, which
            this package makes read a contiguous copy.
        compile (bool | dict): torch.compile the blocks (False, the default: eager). True:
            with symbolic sizes (``dynamic=True``), so that new input sizes reuse the
            compiled code; a dict: torch.compile options (fullgraph, dynamic, backend,
            mode, options). Regional: one compiled function serves every block (see
            ``mmpoolformer.models.compile``). The state_dict is unchanged.
        quadratic_memory_limit (float, optional): GiB that the (N, N) tensors of attention
            with dropout or random mixing may take; None (default): the memory available
            on the input's device when the forward starts. Inputs above it are refused
            before any computation (``check_input_size``).
        init_cfg (dict, optional): ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            prefix=None)`` loads ImageNet weights (see ``init_weights``).
        pretrained (str, optional): Only None. mmseg passes a config's
            ``model.pretrained`` here; weights go through ``init_cfg`` instead, and a
            non-None value is refused with a message that says so.
    """

    arch_settings: dict = {}
    family: Optional[FamilySpec] = None

    def __init__(self,
                 arch: Union[str, dict, None] = None,
                 token_mixers: Union[dict, Sequence[dict], None] = None,
                 pool_size: Optional[int] = None,
                 in_channels: int = 3,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 norm_eval: bool = False,
                 with_cp: bool = False,
                 drop_rate: float = 0.,
                 drop_path_rate: float = 0.,
                 norm_cfg: Union[dict, Sequence[dict], None] = None,
                 act_cfg: Optional[dict] = None,
                 out_norm_cfg: Optional[dict] = None,
                 res_scale_init_values: Optional[Sequence] = None,
                 out_channels_last: bool = False,
                 compile: Union[bool, dict] = False,
                 quadratic_memory_limit: Optional[float] = None,
                 init_cfg: Optional[dict] = None,
                 pretrained: Optional[str] = None):
        name, spec = type(self).__name__, self.family
        if pretrained is not None:
            # mmseg's EncoderDecoder hands its model.pretrained (a ResNet checkpoint in
            # every ResNet-based mmseg config) to the backbone.
            raise ValueError(
                f'{name} got pretrained={pretrained!r}, which mmseg passes on from the '
                f"config's model.pretrained (ResNet weights in mmseg's own configs, wrong for "
                f'a MetaFormer). Set model.pretrained=None and give ImageNet weights through '
                f"the backbone's init_cfg=dict(type='Pretrained', checkpoint=...).")
        super().__init__(init_cfg=init_cfg)
        if spec is None:
            raise TypeError(f'{name} states no family: build one of the registered '
                            f'backbones (PoolFormer, ConvFormer, ...)')
        arch = next(iter(self.arch_settings)) if arch is None else arch
        self.arch = resolve_arch(arch, self.arch_settings, name)
        self.arch_name = arch if isinstance(arch, str) else 'custom'
        layers, self.embed_dims = self.arch['layers'], list(self.arch['embed_dims'])
        self.num_stages = len(layers)
        if len(self.embed_dims) != self.num_stages:
            raise ValueError(f'layers has {self.num_stages} stages but embed_dims has '
                             f'{len(self.embed_dims)}')
        self.out_indices = self._check_out_indices(out_indices, self.num_stages)
        self.frozen_stages = self._check_frozen_stages(frozen_stages, self.num_stages)
        if not 0 <= drop_path_rate < 1 or not 0 <= drop_rate < 1:
            raise ValueError('drop_rate and drop_path_rate must be in [0, 1), got '
                             f'{drop_rate} and {drop_path_rate}')
        self.norm_eval = norm_eval
        self.out_channels_last = bool(out_channels_last)
        self.compile_options = compile_options(compile)
        self.quadratic_memory_limit = quadratic_memory_limit
        mixers = spec.token_mixers if token_mixers is None else token_mixers
        if pool_size is not None:
            mixers = _with_pool_size(mixers, pool_size, name)
        norm_cfg = spec.norm_cfg if norm_cfg is None else norm_cfg
        out_norm_cfg = out_norm_cfg or spec.out_norm_cfg or norm_cfg
        self._build_layers(
            layers, in_channels, mixers, norm_cfg, spec.act_cfg if act_cfg is None else act_cfg,
            spec.res_scale_init_values if res_scale_init_values is None
            else res_scale_init_values, drop_rate, drop_path_rate, with_cp)
        self.out_norms = nn.ModuleDict(
            {str(i): build_norm(out_norm_cfg, self.embed_dims[i]) for i in self.out_indices})
        # Only attention and random mixing can need (N, N) tensors; without them the
        # forward skips the memory check altogether.
        self._has_quadratic_mixers = any(
            hasattr(block.token_mixer, 'quadratic_bytes')
            for stage in self.stages for block in stage.blocks)
        self._freeze_stages()

    def _build_layers(self, layers, in_channels, mixers, norm_cfg, act_cfg, res_scale_inits,
                      drop_rate, drop_path_rate, with_cp):
        """The stem and the stages (downsampling + blocks) of the family."""
        spec, n, dims = self.family, self.num_stages, self.embed_dims
        mixers = _per_stage(mixers, n, 'token_mixers')
        mlp_ratios = _per_stage(self.arch.get('mlp_ratios', spec.mlp_ratio), n, 'mlp_ratios')
        norm_cfgs = _per_stage(norm_cfg, n, 'norm_cfg')
        ls_inits = _per_stage(self.arch.get('layer_scale_init_value'), n,
                              'layer_scale_init_values')
        rs_inits = _per_stage(res_scale_inits, n, 'res_scale_init_values')
        self.stem = Downsampling(in_channels, dims[0], **STEM, post_norm=build_norm(
            spec.stem_norm, dims[0]) if spec.stem_norm else None)
        self.min_input_size = STEM['kernel_size'] - 2 * STEM['padding']
        self._geometry = [tuple(STEM.values())] + [tuple(DOWNSAMPLE.values())] * (n - 1)
        total = sum(layers)
        rates = [drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        self.stages = nn.ModuleList()
        for i, dim in enumerate(dims):
            down = nn.Identity() if i == 0 else Downsampling(
                dims[i - 1], dim, **DOWNSAMPLE, pre_norm=build_norm(
                    spec.downsample_norm, dims[i - 1]) if spec.downsample_norm else None)
            first = sum(layers[:i])
            blocks = [
                MetaFormerBlock(
                    dim, build_token_mixer(mixers[i], dim), mlp_ratios[i], norm_cfgs[i],
                    act_cfg, drop=drop_rate, drop_path=rates[first + j],
                    layer_scale_init_value=ls_inits[i], res_scale_init_value=rs_inits[i],
                    mlp_bias=spec.mlp_bias)
                for j in range(layers[i])
            ]
            self.stages.append(MetaFormerStage(down, blocks, with_cp=with_cp,
                                               compile_options=self.compile_options))

    @staticmethod
    def _check_frozen_stages(frozen_stages, num_stages) -> int:
        if not isinstance(frozen_stages, int) or not -1 <= frozen_stages <= num_stages:
            raise ValueError(f'frozen_stages must be an int from -1 (freeze nothing) to '
                             f'{num_stages} (freeze all stages), got {frozen_stages!r}')
        return frozen_stages

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
        """(B, in_channels, H, W) image -> tuple of (B, C_i, H_i, W_i), one per out index,
        contiguous (or channels-last: ``out_channels_last``).

        H_i follows the conv arithmetic: stem floor((H + 2p - k) / s) + 1, then each
        downsampling floor((H_i - 1) / 2) + 1.
        """
        if x.dim() != 4:
            raise ValueError(f'expected a (B, C, H, W) image batch, got shape {tuple(x.shape)}')
        # (Each side on its own, not min(): under torch.compile with symbolic sizes, min()
        # guards on which side is the smaller, and the other orientation recompiles.)
        if x.shape[-2] < self.min_input_size or x.shape[-1] < self.min_input_size:
            raise ValueError(f'input of size {tuple(x.shape[-2:])} is too small: the stem '
                             f'needs height and width of at least {self.min_input_size}')
        if self._has_quadratic_mixers:
            elem = x.element_size()
            if compat.autocast_enabled(x.device.type):
                elem = torch.finfo(compat.autocast_dtype(x.device.type)).bits // 8
            self.check_input_size(x.shape[0], x.shape[2], x.shape[3], elem,
                                  self.training and torch.is_grad_enabled(), x.device)
        x = x.permute(0, 2, 3, 1).contiguous()
        x = self.stem(x)
        outs = []
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i in self.out_indices:
                out = self.out_norms[str(i)](x).permute(0, 3, 1, 2)
                outs.append(out if self.out_channels_last else out.contiguous())
        return tuple(outs)

    # ------------------------------------------------------------------ lr decay
    DECAY_TYPES = ('layer_wise', 'stage_wise')

    def lr_decay_layout(self, decay_type: str) -> tuple:
        """Depths of the parameters for learning-rate decay: ``(depths, labels)``.

        ``depths`` maps each parameter name (relative to the backbone) to its depth: the
        stem 0; then each block in order (``'layer_wise'``: block k of all blocks is k + 1)
        or each stage (``'stage_wise'``: stage i is i + 1). A downsampling goes with the
        stage it opens. The output norms are at the top, ``len(labels)``, with whatever
        sits above the backbone. ``labels[d]`` says what depth d holds.
        """
        if decay_type not in self.DECAY_TYPES:
            raise ValueError(f'decay_type must be one of {self.DECAY_TYPES}, got '
                             f'{decay_type!r}')
        layer_wise = decay_type == 'layer_wise'
        labels = ['stem']
        parts = [('stem.', 0)]
        for i, stage in enumerate(self.stages):
            opens = ' with its downsampling' if i else ''
            if not layer_wise:
                labels.append(f'stage {i}{opens}')
            parts.append((f'stages.{i}.downsample.', len(labels) if layer_wise else
                          len(labels) - 1))
            for j in range(len(stage.blocks)):
                if layer_wise:
                    labels.append(f'stage {i} block {j}' + (opens if j == 0 else ''))
                parts.append((f'stages.{i}.blocks.{j}.', len(labels) - 1))
        parts.append(('out_norms.', len(labels)))
        depths = {}
        for name, _ in self.named_parameters():
            depth = next((d for prefix, d in parts if name.startswith(prefix)), None)
            if depth is None:  # a part added to the backbone without a depth
                raise RuntimeError(f'{type(self).__name__}.lr_decay_layout has no depth for '
                                   f'the parameter {name}')
            depths[name] = depth
        return depths, labels

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
