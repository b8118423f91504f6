"""Training and inference speed of a whole detector or segmentor: this package's backbone
against the official definition, everything else the same.

    python tools/analysis/benchmark_model.py CONFIG [--batch 2] [--size H W] [--repeat 6]
        [--amp] [--compile] [--channels-last] [--device cpu|cuda] [--modes train infer]
        [--cfg-options k=v ...]

The config's model (mmdet or mmseg, chosen by its ``default_scope``) is built twice on the
device: once as configured ("mmpoolformer") and once with the backbone replaced by the
official definition from ``mmpoolformer.testing`` ("reference": ``OfficialPoolFormer`` for
PoolFormer, ``OfficialMetaFormer`` for the hybrid PoolFormer and the MetaFormer
baselines). Every module holds the same weights: the official backbone gets random
weights, ours gets them through ``mmpoolformer.checkpoint.convert_state_dict`` (as
``mmpoolformer.testing.paired`` does), the neck and heads are copied. Before anything is
timed, both backbones run one image of the benchmark size and must agree to 1e-3 (the
header prints the difference); a backbone without an official counterpart (another
backbone, or settings the official code does not have, such as another pool size) is
refused with one ``ERROR:`` line, as are stochastic depth and frozen stages, which the
reference does not have.

The data are random, of the given batch and size, in the form a dataloader delivers them
(uint8 images and data samples), so each step goes through the model's data
preprocessor as in training: for detection ``DetDataSample``s with 8 random boxes and
labels per image (and for mask heads a mask per box, ``BitmapMasks``, or ``PolygonMasks``
if the config's ``LoadAnnotations`` has ``poly2mask=False``); for segmentation
``SegDataSample``s with a random ``gt_sem_seg``. A segmentor's ``data_preprocessor.size``
(the training crop it pads to) is set to ``--size``, so that the model sees the size asked
for; mmdet pads to its ``pad_size_divisor`` (each table is preceded by the shape of the
batch the backbone gets).

- train: ``model.train_step(data, optim_wrapper)``, one whole iteration: data
  preprocessing, forward, losses, backward, optimizer step (the config's optim_wrapper,
  gradient clipping included; with ``--amp`` mmengine's ``AmpOptimWrapper`` with dynamic
  loss scaling on CUDA, ``mmpoolformer.AmpCPUOptimWrapper`` on the CPU, as
  ``tools/train.py --amp``). The learning rate is set to 0 so that every repeat times the
  same model: the optimizer does all its work, but the weights, and with them the number
  of proposals a two-stage detector's RoI head processes, do not drift.
- infer: ``model.test_step(data)`` under ``torch.no_grad()`` (and autocast with ``--amp``):
  preprocessing, forward, post-processing (NMS, resizing to the original size).

The steps of the two models alternate, step by step, so that a shared machine's drift hits
both alike (``benchmark_backbone.timeit``); each figure is the median of ``--repeat``
after one warm-up step (two with ``--compile``). The ratio "vs reference" is the
reference's time over this row's, from the same run.

Backbone share: in the same alternation, the backbone alone runs on the batch that the
data preprocessor made: forward and backward of the sum of its outputs' means (train) or
the forward under ``torch.no_grad()`` (infer), under the same autocast. Its median over the
whole step's median is the share. The backward of the sum of means costs what the neck's
real gradients cost (same shapes, same ops), but the backbone is timed on its own, without
the neck and heads around it (other cache and allocator state; on CUDA, no overlap with
them), so the share estimates where the time goes; it is not a split of the measured step.

Peak memory, measured once per impl after the timing: on CUDA
``torch.cuda.max_memory_allocated`` during one step minus the memory allocated before it;
on the CPU (Linux) the peak RSS during one step minus the RSS before it, with the
C library's free heap memory handed back to the system first (``malloc_trim``), so the
figure follows what the step touches rather than what earlier steps left in the heap.

Options: ``--amp``: bf16 autocast on the CPU, fp16 with loss scaling on CUDA.
``--compile``: ours with the backbone's ``compile=True``; the reference with
``torch.compile(dynamic=False)`` on each of its blocks (regional; the benchmark's shapes are
fixed). ``--channels-last``: both models' neck and heads in channels_last memory, ours with
``out_channels_last=True`` (mmcv's RoIAlign, which ignores strides, reads a contiguous
copy: ``mmpoolformer.engine.mmcv_compat``). Benchmarks are not tests: the test suite only
checks that the two models compute the same losses and that the tool prints its tables.
"""
import argparse
import copy
import ctypes
import gc
import os.path as osp
import platform
import sys
from dataclasses import dataclass, field
from typing import List, Optional

import torch
import torch.nn as nn

HERE = osp.dirname(osp.abspath(__file__))
sys.path.insert(0, osp.dirname(osp.dirname(HERE)))
sys.path.insert(0, HERE)  # the sibling tools

from benchmark_backbone import _status_kib, sync, timeit  # noqa: E402
from get_flops import load  # noqa: E402

from mmpoolformer import compat  # noqa: E402

# Backbones and official outputs must agree to this before anything is timed.
PARITY_TOL = 1e-3
BOXES_PER_IMAGE = 8
IMPLS = ('mmpoolformer', 'reference')


class NoCounterpartError(ValueError):
    """The config's backbone has no official definition to compare with."""


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='mmdet or mmseg config with an mmpoolformer backbone')
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=[512, 512], metavar=('H', 'W'))
    parser.add_argument('--repeat', type=int, default=6, help='timed steps per impl (median)')
    parser.add_argument('--amp', action='store_true',
                        help='bf16 autocast on the CPU, fp16 with loss scaling on CUDA')
    parser.add_argument('--compile', action='store_true',
                        help='torch.compile the backbones (regionally)')
    parser.add_argument('--channels-last', action='store_true',
                        help='neck and heads in channels_last memory')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    parser.add_argument('--modes', nargs='+', default=['train', 'infer'],
                        choices=('train', 'infer'))
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.arch=s24')
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------- the pair
@dataclass
class Pair:
    """Our model and the reference model, the same weights in every module."""
    ours: nn.Module
    reference: nn.Module
    scope: str
    family: str  # mmpoolformer.testing.FAMILIES
    backbone_error: float  # max rel. difference of the backbone outputs on one image
    notes: List[str] = field(default_factory=list)

    def model(self, impl: str) -> nn.Module:
        return self.ours if impl == 'mmpoolformer' else self.reference


class SelectedOutputs(nn.Module):
    """An official baseline (which returns all four stages) returning ``out_indices``."""

    def __init__(self, model: nn.Module, out_indices):
        super().__init__()
        self.model = model
        self.out_indices = tuple(out_indices)
        for i in range(len(model.out_norms)):
            if i not in self.out_indices:
                model.out_norms[i] = nn.Identity()  # not computed, as in ours

    def forward(self, x):
        outs = self.model(x)
        return tuple(outs[i] for i in self.out_indices)


def _reference_backbone(backbone, seed: int = 0):
    """(family, official module with random weights) matching our built ``backbone``."""
    from mmpoolformer.models import MetaFormer, PoolFormer
    from mmpoolformer.models.layers import Pooling
    from mmpoolformer.testing import FAMILIES, build_official, official_from_arch, randomize_
    name = type(backbone).__name__
    if not isinstance(backbone, MetaFormer):
        raise NoCounterpartError(f'backbone {name} is not an mmpoolformer MetaFormer: there '
                                 f'is no official definition to compare it with')
    if type(backbone) is PoolFormer:
        pooling = all(isinstance(b.token_mixer, Pooling)
                      for stage in backbone.stages for b in stage.blocks)
        family = 'PoolFormer' if pooling else 'hybrid PoolFormer'
    else:
        family = name
    if family not in FAMILIES:
        raise NoCounterpartError(f'backbone {name} has no official definition in '
                                 f'mmpoolformer.testing (families: {", ".join(FAMILIES)})')
    torch.manual_seed(seed)
    if family == 'PoolFormer':
        official = official_from_arch(backbone.arch, out_indices=backbone.out_indices)
    else:
        official = build_official(family)
    return family, randomize_(official, seed)


def _check_trainable_alike(cfg_backbone):
    if cfg_backbone.get('drop_path_rate', 0) or cfg_backbone.get('drop_rate', 0):
        raise NoCounterpartError(
            'the official definition has no stochastic depth or dropout: run with '
            '--cfg-options model.backbone.drop_path_rate=0 model.backbone.drop_rate=0')
    if cfg_backbone.get('frozen_stages', -1) != -1:
        raise NoCounterpartError('the official definition trains every stage: run with '
                                 '--cfg-options model.backbone.frozen_stages=-1')


def _load_or_refuse(ours: nn.Module, weights: dict, family: str):
    """Load the official weights into ours; NoCounterpartError if they do not fit."""
    own = ours.state_dict()
    missing, extra = sorted(set(own) - set(weights)), sorted(set(weights) - set(own))
    shapes = [k for k in set(own) & set(weights) if own[k].shape != weights[k].shape]
    problems = [f'{len(keys)} {what} (e.g. {keys[0]})' for keys, what in (
        (missing, 'of its parameters not in the official one'),
        (extra, 'official parameters it lacks'),
        (sorted(shapes), 'parameters of another shape')) if keys]
    if problems:
        raise NoCounterpartError(f'{type(ours).__name__} with these settings has other '
                                 f'parameters than the official {family}: '
                                 f'{"; ".join(problems)}')
    ours.load_state_dict(weights, strict=True)


def paired_backbones(backbone_cfg, size, device):
    """(family, our backbone, official backbone, max rel. error): the same weights, checked
    on one random image of ``size``; NoCounterpartError when no official one matches."""
    from mmengine.registry import MODELS

    from mmpoolformer.checkpoint import convert_state_dict
    _check_trainable_alike(backbone_cfg)
    ours = MODELS.build(copy.deepcopy(backbone_cfg))
    family, official = _reference_backbone(ours)
    weights = convert_state_dict(official.state_dict(), with_out_norms=True)[0]
    if family != 'PoolFormer':  # the baselines' official code normalises all four outputs
        keep = {f'out_norms.{i}.' for i in ours.out_indices}
        weights = {k: v for k, v in weights.items()
                   if not k.startswith('out_norms.') or k[:len('out_norms.0.')] in keep}
        official = SelectedOutputs(official, ours.out_indices)
    _load_or_refuse(ours, weights, family)
    ours, official = ours.to(device).eval(), official.to(device).eval()
    x = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(0)).to(device)
    try:
        with torch.no_grad():
            got, want = ours(x), official(x)
    except RuntimeError as e:
        raise NoCounterpartError(f'the official {family} does not run at '
                                 f'{size[0]}x{size[1]}: {str(e).splitlines()[0]}')
    if len(got) != len(want) or any(g.shape != w.shape for g, w in zip(got, want)):
        raise NoCounterpartError(f'{type(ours).__name__} and the official {family} return '
                                 f'different outputs')
    error = max(((g - w).abs().max() / w.abs().max().clamp_min(1e-12)).item()
                for g, w in zip(got, want))
    if not error <= PARITY_TOL:
        raise NoCounterpartError(
            f'{type(ours).__name__} with these settings computes something else than the '
            f'official {family} (max rel. difference {error:.1e} on the same weights): its '
            f'token mixers, pool size, norms or activation differ from the official ones')
    return family, ours, official, error


def _build(cfg_model):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    return revert_sync_batchnorm(MODELS.build(copy.deepcopy(cfg_model)))


def _load_renamed(module: nn.Module, state: dict):
    """Load ``state`` (plain module names) into ``module``, whose own names may carry
    ``torch.compile``'s ``_orig_mod.`` where it wrapped submodules."""
    own = {k.replace('_orig_mod.', ''): k for k in module.state_dict()}
    module.load_state_dict({own.get(k, k): v for k, v in state.items()}, strict=True)


def build_pair(cfg, size, device='cpu', compile=False, channels_last=False) -> Pair:
    """The config's model twice: with our backbone and with the official one.

    ``compile``/``channels_last`` as the command-line flags. The models come in train
    mode; ``cfg`` is not modified.
    """
    from mmengine.logging import MMLogger
    from mmengine.registry import init_default_scope

    from mmpoolformer.apis.tensor_model import config_scope
    device = torch.device(device)
    cfg = copy.deepcopy(cfg)
    scope = config_scope(cfg)
    init_default_scope(scope)
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # random weights: nothing to download
    if model_cfg.get('pretrained'):
        model_cfg.pretrained = None
    if scope == 'mmseg' and model_cfg.get('data_preprocessor', {}).get('size'):
        model_cfg.data_preprocessor.size = tuple(size)
    family, plain, official, error = paired_backbones(model_cfg.backbone, size, device)
    notes = []
    ours_cfg = copy.deepcopy(model_cfg)
    if compile:
        ours_cfg.backbone.compile = True
        notes.append('ours: backbone compile=True')
    if channels_last:
        ours_cfg.backbone.out_channels_last = True
        notes.append('ours: backbone out_channels_last=True')
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # init_weights logs every tensor
    try:
        ours = _build(ours_cfg)
        ours.init_weights()
    finally:
        logger.setLevel(level)
    _load_renamed(ours.backbone, plain.state_dict())
    reference = _build(model_cfg)
    reference.backbone = official
    shared = {k: v for k, v in ours.state_dict().items() if not k.startswith('backbone.')}
    missing, unexpected = reference.load_state_dict(shared, strict=False)
    assert not unexpected and all(k.startswith('backbone.') for k in missing), (
        missing, unexpected)
    if compile:
        # The blocks share one forward, compiled per width (4 per model) and grad mode:
        # 8 static graphs, dynamo's default limit before it falls back to eager.
        compat.raise_recompile_limit(32)
        for m in list(official.modules()):
            if isinstance(m, nn.Sequential):  # the stages: compile each block
                for block in m:
                    block.compile(dynamic=False)
        notes.append('reference: torch.compile on each block')
    pair = Pair(ours.to(device).train(), reference.to(device).train(), scope, family,
                error, notes)
    if channels_last:
        for model in (pair.ours, pair.reference):
            for name, child in model.named_children():
                if name not in ('backbone', 'data_preprocessor'):
                    child.to(memory_format=torch.channels_last)
        notes.append('neck and heads channels_last')
    return pair


# ---------------------------------------------------------------------------- data
def _num_classes(cfg, scope) -> int:
    m = cfg.model
    if scope == 'mmseg':
        return m.decode_head.num_classes
    head = m.get('roi_head', {}).get('bbox_head') or m.get('bbox_head')
    return head['num_classes']


def _poly2mask(cfg) -> bool:
    """Whether the training pipeline's LoadAnnotations makes bitmaps (mmdet's default)."""
    def find(node):
        if isinstance(node, dict):
            if node.get('type') == 'LoadAnnotations':
                return node
            node = list(node.values())
        if isinstance(node, (list, tuple)):
            for value in node:
                found = find(value)
                if found is not None:
                    return found
        return None
    load_ann = find(cfg.get('train_dataloader', {})) or {}
    return load_ann.get('poly2mask', True)


def make_batch(cfg, batch: int, size, seed: int = 0) -> dict:
    """Random data as the config's dataloader delivers them: uint8 images, data samples."""
    import numpy as np
    from mmengine.structures import InstanceData, PixelData

    from mmpoolformer.apis.tensor_model import config_scope
    scope = config_scope(cfg)
    h, w = size
    gen = torch.Generator().manual_seed(seed)
    classes = _num_classes(cfg, scope)
    meta = dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1., 1.), flip=False,
                flip_direction=None)
    with_mask = scope == 'mmdet' and cfg.model.get('roi_head', {}).get('mask_head')
    inputs, samples = [], []
    for _ in range(batch):
        inputs.append(torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=gen))
        if scope == 'mmseg':
            from mmseg.structures import SegDataSample
            sample = SegDataSample(metainfo=meta)
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, classes, (1, h, w), generator=gen))
            samples.append(sample)
            continue
        from mmdet.structures import DetDataSample
        from mmdet.structures.bbox import HorizontalBoxes
        from mmdet.structures.mask import BitmapMasks, PolygonMasks
        n = BOXES_PER_IMAGE
        wh = torch.rand(n, 2, generator=gen) * torch.tensor([w, h]) * 0.45 + \
            torch.tensor([w, h]) * 0.05
        xy = torch.rand(n, 2, generator=gen) * (torch.tensor([w, h]) - wh)
        boxes = torch.cat([xy, xy + wh], dim=1)
        sample = DetDataSample(metainfo=meta)
        gt = InstanceData(bboxes=HorizontalBoxes(boxes),
                          labels=torch.randint(0, classes, (n, ), generator=gen))
        ignored = InstanceData(bboxes=HorizontalBoxes(torch.zeros(0, 4)),
                               labels=torch.zeros(0, dtype=torch.long))
        if with_mask:
            x1, y1, x2, y2 = boxes.round().int().T.tolist()
            if _poly2mask(cfg):
                bitmaps = np.zeros((n, h, w), dtype=np.uint8)
                for i in range(n):
                    bitmaps[i, y1[i]:y2[i], x1[i]:x2[i]] = 1
                gt.masks = BitmapMasks(bitmaps, h, w)
                ignored.masks = BitmapMasks(np.zeros((0, h, w), dtype=np.uint8), h, w)
            else:
                gt.masks = PolygonMasks([[np.array([x1[i], y1[i], x2[i], y1[i], x2[i], y2[i],
                                                    x1[i], y2[i]], dtype=np.float64)]
                                         for i in range(n)], h, w)
                ignored.masks = PolygonMasks([], h, w)
        sample.gt_instances, sample.ignored_instances = gt, ignored
        samples.append(sample)
    return dict(inputs=inputs, data_samples=samples)


def losses(model: nn.Module, data: dict, seed: int = 0) -> dict:
    """{name: float} of the model's losses on ``data`` (train mode, seeded sampling)."""
    model.train()
    torch.manual_seed(seed)
    batch = model.data_preprocessor(copy.deepcopy(data), True)
    _, log_vars = model.parse_losses(model(**batch, mode='loss'))
    return {k: v.item() for k, v in log_vars.items()}


# ---------------------------------------------------------------------------- timing
def _autocast(device, amp):
    dtype = torch.float16 if device.type == 'cuda' else torch.bfloat16
    return torch.autocast(device.type, dtype=dtype, enabled=amp)


def optim_wrapper(cfg, model, amp: bool, device):
    """The config's optim_wrapper (lr 0, see the module doc), made AMP as tools/train.py."""
    from mmengine.optim import build_optim_wrapper
    wrapper = copy.deepcopy(cfg.optim_wrapper)
    wrapper.optimizer.lr = 0.
    if amp:
        if device.type == 'cuda':
            wrapper.type, wrapper.loss_scale = 'AmpOptimWrapper', 'dynamic'
        else:
            wrapper.type = 'mmpoolformer.AmpCPUOptimWrapper'
    return build_optim_wrapper(model, wrapper)


def step_fns(model, wrapper, data, mode, amp, device):
    """(whole step, backbone alone) for ``mode``, as argument-free functions."""
    data = copy.deepcopy(data)  # the preprocessor writes into the samples
    with torch.no_grad():
        x = model.data_preprocessor(copy.deepcopy(data), mode == 'train')['inputs']
    backbone = model.backbone

    if mode == 'train':
        def step():
            model.train()
            model.train_step(data, wrapper)

        def backbone_step():
            backbone.train()
            with _autocast(device, amp):
                outs = backbone(x)
            sum(o.float().mean() for o in outs).backward()
            backbone.zero_grad(set_to_none=True)
    else:
        def step():
            model.eval()
            with torch.no_grad(), _autocast(device, amp):
                model.test_step(data)

        def backbone_step():
            backbone.eval()
            with torch.no_grad(), _autocast(device, amp):
                backbone(x)
    return step, backbone_step, tuple(x.shape)


def _malloc_trim():
    try:
        ctypes.CDLL('libc.so.6').malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mib(fn, device) -> Optional[float]:
    """Memory one call of ``fn`` needs above what was in use before it (see the doc)."""
    gc.collect()
    if device.type == 'cuda':
        sync(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        sync(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    _malloc_trim()
    try:
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')  # reset the peak (VmHWM) to the current RSS
        before = _status_kib('VmRSS')
    except OSError:
        return None
    fn()
    return (_status_kib('VmHWM') - before) / 1024


def bench_mode(pair: Pair, wrappers, data, mode, args):
    """{impl: dict(step=s, backbone=s, memory=MiB)} and the backbone's input shape."""
    fns, shape = {}, None
    for impl in IMPLS:
        model = pair.model(impl)
        step, backbone_step, shape = step_fns(model, wrappers.get(impl), data, mode,
                                              args.amp, args.device)
        fns[impl] = step
        fns[impl + ' backbone'] = backbone_step
    if args.compile:
        for fn in fns.values():
            fn()  # compilation; timeit warms up once more
    times = timeit(fns, args.repeat, args.device)
    results = {impl: dict(step=times[impl], backbone=times[impl + ' backbone'],
                          memory=peak_memory_mib(fns[impl], args.device))
               for impl in IMPLS}
    return results, shape


# ---------------------------------------------------------------------------- report
def device_name(device) -> str:
    if device.type == 'cuda':
        return torch.cuda.get_device_name(device)
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or 'CPU'


STEP_TEXT = {
    'train': 'one training iteration: data preprocessor, forward, losses, backward, '
             'optimizer step',
    'infer': 'test_step under no_grad: data preprocessor, forward, post-processing',
}


def format_table(mode, results, repeat, device) -> str:
    how = ('torch.cuda.max_memory_allocated during the step minus allocated before'
           if device.type == 'cuda' else 'peak RSS during the step minus RSS before')
    lines = [f'## {mode}: {STEP_TEXT[mode]} (median of {repeat})',
             '| impl | s/step | vs reference | backbone s | backbone share | peak MiB |',
             '|---|---|---|---|---|---|']
    ref = results['reference']['step']
    for impl in IMPLS:
        r = results[impl]
        memory = 'n/a' if r['memory'] is None else f'{r["memory"]:.0f}'
        lines.append(f'| {impl} | {r["step"]:.4f} | {ref / r["step"]:.2f}x | '
                     f'{r["backbone"]:.4f} | {100 * r["backbone"] / r["step"]:.0f}% | '
                     f'{memory} |')
    lines.append(f'(peak MiB: {how}; backbone: the backbone alone on the same batch)')
    return '\n'.join(lines)


def header(args, pair: Pair) -> str:
    device = args.device
    threads = '' if device.type == 'cuda' else f', {torch.get_num_threads()} threads'
    precision = ('fp16 AMP' if device.type == 'cuda' else 'bf16 autocast') if args.amp \
        else 'fp32'
    flags = [precision] + ['compile'] * args.compile + ['channels-last'] * args.channels_last
    backbone = pair.ours.backbone
    arch = getattr(backbone, 'arch_name', '?')
    lines = [
        f'# {args.config}',
        f'device: {device_name(device)} ({device.type}{threads}); torch {torch.__version__}; '
        f'batch {args.batch}, {args.size[0]}x{args.size[1]}; flags: {", ".join(flags)}',
        f'model: {type(pair.ours).__name__} ({pair.scope}), backbone '
        f'{type(backbone).__name__} {arch}; reference: '
        f'the official {pair.family} (mmpoolformer.testing), same weights in every module',
        f'backbone outputs, ours vs reference: max rel. difference '
        f'{pair.backbone_error:.1e} (fp32, one image)',
    ]
    lines += [f'note: {note}' for note in pair.notes]
    return '\n'.join(lines)


def _check_mmcv_cuda():
    """mmdet's detectors need mmcv's ops (NMS, RoIAlign) compiled for CUDA."""
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.]], device='cuda')
    try:
        nms(boxes, torch.ones(1, device='cuda'), 0.5)
    except (RuntimeError, NotImplementedError) as e:
        sys.exit(f'ERROR: --device cuda: mmcv\'s ops do not run on CUDA here (build mmcv '
                 f'with FORCE_CUDA=1): {str(e).splitlines()[0]}')


def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'ERROR: config not found: {args.config}')
    if args.batch < 1 or args.repeat < 1 or min(args.size) < 32:
        sys.exit('ERROR: --batch and --repeat must be at least 1, --size at least 32 32')
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('ERROR: --device cuda: torch sees no CUDA device here')
    args.device = torch.device(args.device)
    cfg = load(args.config, args.cfg_options)
    if args.device.type == 'cuda' and cfg.get('default_scope', 'mmdet') == 'mmdet':
        _check_mmcv_cuda()
    try:
        pair = build_pair(cfg, args.size, args.device, args.compile, args.channels_last)
    except (NoCounterpartError, KeyError) as e:  # KeyError: a type no registry knows
        sys.exit(f'ERROR: {e.args[0]}')
    data = make_batch(cfg, args.batch, args.size)
    wrappers = {}
    if 'train' in args.modes:
        wrappers = {impl: optim_wrapper(cfg, pair.model(impl), args.amp, args.device)
                    for impl in IMPLS}
    print(header(args, pair), flush=True)
    report = {}
    for mode in args.modes:
        results, shape = bench_mode(pair, wrappers, data, mode, args)
        report[mode] = results
        print(f'\nbackbone input ({mode}): {"x".join(map(str, shape))}')
        print(format_table(mode, results, args.repeat, args.device), flush=True)
    return report


if __name__ == '__main__':
    main()
