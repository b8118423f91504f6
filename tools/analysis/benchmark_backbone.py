"""Speed and memory of this package's PoolFormer against the plain official definition.

    python tools/analysis/benchmark_backbone.py [--archs s12 s24 ...] [--batch 2]
        [--size 512 512] [--repeat 7] [--channels-last-reference] [--memory] [--detector]

Everything is measured side by side in one run, on the same weights and inputs:
- the reference: ``mmpoolformer.testing.OfficialPoolFormer``, the official definition in
  plain NCHW PyTorch (nn.GroupNorm, nn.AvgPool2d, 1x1 convs), as the official/mmpretrain
  ports run it;
- this package's ``PoolFormer`` with its defaults (what a config gets);
- with ``--channels-last-reference``, also the reference on channels_last tensors.
For fp32 and bf16 autocast, eval (no grad) and train (forward + backward): median seconds
(the implementations alternate, step by step), images/s, achieved GFLOP/s (conv +
matmul FLOPs of the model, counted by torch's FlopCounterMode; a train step counts 3x the
forward) as a share of this machine's measured matmul peak (the faster of MKL's and
oneDNN's GEMM on 2048 x 2048 operands), and the speed-up. ``--memory`` adds peak training
memory at 800x1216 (each measurement in a fresh process: peak RSS during the step minus RSS
before); ``--detector`` adds a RetinaNet-S12 training iteration with either backbone.
Benchmarks are not tests: the test suite checks that the fast paths give the reference's
numbers.
"""
import argparse
import copy
import os
import os.path as osp
import statistics
import subprocess
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmpoolformer.checkpoint import convert_state_dict  # noqa: E402
from mmpoolformer.models import PoolFormer  # noqa: E402
from mmpoolformer.models.layers import fused_ops  # noqa: E402
from mmpoolformer.testing import official_from_arch, randomize_  # noqa: E402


def timeit(fns, repeat):
    """Median seconds of each function, run in alternation so that both see the same load.

    On a shared machine the speed drifts over seconds; interleaving the candidates makes
    that drift hit each of them alike instead of whichever ran during a slow spell.
    """
    for fn in fns.values():
        fn()  # warm-up (oneDNN primitive creation, allocator)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak(dtype, n=2048, repeat=5):
    """The best of MKL's ``mm`` and oneDNN's linear on (n x n) operands, in GFLOP/s."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    fns = {'mm': lambda: a @ b}
    if fused_ops.mkldnn_linear_available():
        fns['onednn'] = lambda: fused_ops.linear(a, b, None)
    return max(2 * n**3 / t / 1e9 for t in timeit(fns, repeat).values())


def paired(arch, out_indices=(0, 1, 2, 3)):
    ref = randomize_(official_from_arch(PoolFormer.arch_settings[arch],
                                        out_indices=out_indices))
    ours = PoolFormer(arch, out_indices=out_indices)
    ours.load_state_dict(convert_state_dict(ref.state_dict(), with_out_norms=True)[0])
    return ref, ours


def forward_flops(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops()


def step_fn(model, x, train, bf16):
    def run():
        with torch.autocast('cpu', dtype=torch.bfloat16, enabled=bf16):
            if train:
                outs = model(x)
                sum(o.float().mean() for o in outs).backward()
            else:
                with torch.no_grad():
                    model(x)
        if train:
            model.zero_grad(set_to_none=True)
    model.train(train)
    return run


def bench_arch(arch, args, peaks):
    ref, ours = paired(arch)
    x = torch.randn(args.batch, 3, *args.size)
    flops = forward_flops(ref, x)
    with torch.no_grad():
        expected = ref.eval()(x)
        got = ours.eval()(x)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            got_bf16 = ours(x)
    err = max(((e - g).abs().max() / e.abs().max()).item() for e, g in zip(expected, got))
    cos = min(torch.nn.functional.cosine_similarity(e.flatten().double(),
                                                    g.float().flatten().double(), dim=0).item()
              for e, g in zip(expected, got_bf16))
    print(f'\n## {arch}, batch {args.batch}, {args.size[0]}x{args.size[1]}: '
          f'{flops / 1e9:.1f} GFLOP forward; ours vs reference: max rel. error fp32 '
          f'{err:.1e}, bf16 cosine {cos:.5f}')
    print('| mode | impl | s/step | img/s | GFLOP/s | % of matmul peak | speed-up |')
    print('|---|---|---|---|---|---|---|')
    ref_cl = x_cl = None
    if args.channels_last_reference:
        # The same reference code on channels_last tensors: what a user can get from the
        # official definition without this package.
        ref_cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
    fp32_ref_eval = None
    for dtype in ('fp32', 'bf16'):
        for train in (False, True):
            mode = f'{dtype} {"train" if train else "eval"}'
            step_flops = flops * (3 if train else 1)
            candidates = {'reference': step_fn(ref, x, train, dtype == 'bf16')}
            if ref_cl is not None:
                candidates['reference, channels_last'] = step_fn(ref_cl, x_cl, train,
                                                                 dtype == 'bf16')
            candidates['mmpoolformer'] = step_fn(ours, x, train, dtype == 'bf16')
            times = timeit(candidates, args.repeat)
            if mode == 'fp32 eval':
                fp32_ref_eval = times['reference']
            for name, t in times.items():
                gflops = step_flops / t / 1e9
                speedup = times['reference'] / t
                extra = ''
                if dtype == 'bf16' and not train:
                    extra = f' ({fp32_ref_eval / t:.2f}x vs fp32 reference)'
                print(f'| {mode} | {name} | {t:.3f} | {args.batch / t:.2f} | {gflops:.0f} | '
                      f'{100 * gflops / peaks[dtype]:.0f}% | {speedup:.2f}x{extra} |')


def _status_kib(field):
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def memory_child(impl, with_cp, batch, h, w):
    """Runs in a fresh process: peak RSS during one training step minus RSS before (MiB)."""
    ref, ours = paired('s12')
    model = ref if impl == 'reference' else ours
    if impl != 'reference':
        for stage in model.stages:
            stage.with_cp = with_cp
    x = torch.randn(batch, 3, h, w)
    model.train()
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')  # reset the peak (VmHWM) to the current RSS
    before = _status_kib('VmRSS')
    outs = model(x)
    sum(o.mean() for o in outs).backward()
    print((_status_kib('VmHWM') - before) / 1024)


def bench_memory(args):
    h, w, batch = 800, 1216, 2
    print(f'\n## Peak training memory, S12, batch {batch}, {h}x{w} (peak RSS during one '
          f'step minus RSS before it)')
    print('| impl | MiB | reference / this |')
    print('|---|---|---|')
    results = {}
    for impl, cp in (('reference', False), ('mmpoolformer', False), ('mmpoolformer', True)):
        # With glibc's dynamic mmap threshold, freed activation buffers stay in the heap
        # and inflate the high-water mark unpredictably; a fixed threshold maps every large
        # tensor and returns it on free, so peak RSS follows the live tensors.
        env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
        out = subprocess.run([sys.executable, __file__, '--memory-child', impl, str(int(cp)),
                              str(batch), str(h), str(w)], capture_output=True, text=True,
                             env=env)
        if out.returncode:
            sys.exit(out.stderr)
        mib = float(out.stdout.split()[-1])
        label = impl + (' with_cp' if cp else '')
        results[label] = mib
        ratio = results['reference'] / mib if mib > 0 else float('nan')
        print(f'| {label} | {mib:.0f} | {ratio:.2f}x less |')


def bench_detector(args):
    from mmdet.registry import MODELS
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    cfg = Config.fromfile(osp.join(osp.dirname(__file__), '..', '..', 'configs',
                                   'retinanet_poolformer_s12.py'))
    cfg.model.backbone.init_cfg = None
    x = torch.randn(2, 3, 512, 512)
    print('\n## RetinaNet-S12 training iteration, batch 2, 512x512 (backbone swapped only)')
    print('| backbone | s/iter | speed-up |')
    print('|---|---|---|')
    ref_bb, ours_bb = paired('s12', out_indices=(1, 2, 3))
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model)
    from mmengine.logging import MMLogger
    MMLogger.get_current_instance().setLevel('WARNING')  # init_weights logs every tensor
    model.init_weights()
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(512, 512), pad_shape=(512, 512),
                                        batch_input_shape=(512, 512), scale_factor=(1, 1)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[50., 60., 200., 220.],
                                                           [300., 310., 420., 480.]]),
                                      labels=torch.tensor([1, 5]))
        samples.append(s)
    model.train()

    def step_with(backbone):
        def step():
            model.backbone = backbone
            losses = model.loss(x, samples)
            loss, _ = model.parse_losses(losses)
            loss.backward()
            model.zero_grad(set_to_none=True)
        return step
    times = timeit({'reference': step_with(ref_bb), 'mmpoolformer': step_with(ours_bb)},
                   args.repeat)
    for name, t in times.items():
        print(f'| {name} | {t:.3f} | {times["reference"] / t:.2f}x |')


def main():
    if len(sys.argv) > 1 and sys.argv[1] == '--memory-child':
        impl, cp, batch, h, w = sys.argv[2:7]
        return memory_child(impl, bool(int(cp)), int(batch), int(h), int(w))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--archs', nargs='+', default=list(PoolFormer.arch_settings),
                        choices=list(PoolFormer.arch_settings))
    parser.add_argument('--batch', type=int, default=2)
    parser.add_argument('--size', type=int, nargs=2, default=[512, 512])
    parser.add_argument('--repeat', type=int, default=7)
    parser.add_argument('--channels-last-reference', action='store_true',
                        help='also time the reference on channels_last tensors')
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--detector', action='store_true')
    args = parser.parse_args()
    torch.manual_seed(0)
    peaks = {'fp32': matmul_peak(torch.float32), 'bf16': matmul_peak(torch.bfloat16)}
    print(f'torch {torch.__version__}, {torch.get_num_threads()} threads; measured matmul '
          f'peak: fp32 {peaks["fp32"]:.0f} GFLOP/s, bf16 {peaks["bf16"]:.0f} GFLOP/s')
    for arch in args.archs:
        bench_arch(arch, args, peaks)
    if args.memory:
        bench_memory(args)
    if args.detector:
        bench_detector(args)


if __name__ == '__main__':
    main()
