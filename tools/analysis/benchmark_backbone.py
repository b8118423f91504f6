"""Speed and memory of this package's PoolFormer against the plain official definition.

    python tools/analysis/benchmark_backbone.py [--archs s12 s24 ...] [--batch 2]
        [--size 512 512] [--repeat 7] [--channels-last-reference] [--compile [--cold]]
        [--roofline] [--memory] [--detector] [--device cpu|cuda]

Everything is measured side by side in one run, on the same weights and inputs:
- the reference: ``mmpoolformer.testing.OfficialPoolFormer``, the official definition in
  plain NCHW PyTorch (nn.GroupNorm, nn.AvgPool2d, 1x1 convs), as the official/mmpretrain
  ports run it;
- this package's ``PoolFormer`` with its defaults (what a config gets);
- with ``--channels-last-reference``, also the reference on channels_last tensors;
- with ``--compile``, also the reference under ``torch.compile`` (default options) and ours
  with ``compile=True`` (regional, symbolic sizes), each row with the time of its first,
  compiling call (``--cold``: with the compile caches off, so that it is a cold compile).
For fp32 and bf16 autocast, eval (no grad) and train (forward + backward): median seconds
(the implementations alternate, step by step), images/s, achieved GFLOP/s (conv +
matmul FLOPs of the model, counted by torch's FlopCounterMode; a train step counts 3x the
forward) as a share of this machine's measured matmul peak (the faster of MKL's and
oneDNN's GEMM on 2048 x 2048 operands), and the speed-up. ``--roofline`` adds each step's
share of the least time this machine allows for it (``least_time``: the step's GEMM FLOPs at
the measured matmul peak of its dtype plus the bytes it must move at the measured memory
bandwidth). ``--memory`` adds peak training
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

from mmpoolformer import testing  # noqa: E402
from mmpoolformer.models import PoolFormer  # noqa: E402
from mmpoolformer.models.kernels import cpu as cpu_kernels  # noqa: E402
from mmpoolformer.testing.official_poolformer import OfficialBlock, OfficialEmbed  # noqa: E402


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def timeit(fns, repeat, device=torch.device('cpu')):
    """Median seconds of each function, run in alternation so that both see the same load.

    On a shared machine the speed drifts over seconds; interleaving the candidates makes
    that drift hit each of them alike instead of whichever ran during a slow spell.
    """
    for fn in fns.values():
        fn()  # warm-up (oneDNN primitive creation, cuDNN autotuning, allocator)
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            sync(device)
            t = time.perf_counter()
            fn()
            sync(device)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def matmul_peak(dtype, device, n=2048, repeat=5):
    """GFLOP/s of an (n x n) GEMM: on the CPU the best of MKL's ``mm`` and oneDNN's linear."""
    if device.type == 'cuda':
        n = 8192
    a = torch.randn(n, n, dtype=dtype, device=device)
    b = torch.randn(n, n, dtype=dtype, device=device)
    fns = {'mm': lambda: a @ b}
    if device.type == 'cpu' and cpu_kernels.mkldnn_linear_available():
        fns['onednn'] = lambda: cpu_kernels.linear(a, b, None)
    return max(2 * n**3 / t / 1e9 for t in timeit(fns, repeat, device).values())


def memory_bandwidth(device, mib=512, repeat=5):
    """Bytes/s of the faster of a copy and an add over fp32 tensors far larger than the
    caches (STREAM's counting: each element read or written once, no write-allocate)."""
    n = mib * 2**20 // 4
    a, c = torch.rand(n, device=device), torch.rand(n, device=device)
    b = torch.empty_like(a)
    moved = {'copy': 2 * 4 * n, 'add': 3 * 4 * n}
    times = timeit({'copy': lambda: b.copy_(a), 'add': lambda: torch.add(a, c, out=b)},
                   repeat, device)
    return max(moved[name] / t for name, t in times.items())


def step_cost(ref, x, train):
    """(GEMM FLOPs, bytes it must move) of a step of the reference ``ref`` on ``x``.

    FLOPs: every convolution and matmul of the step (forward, and in training the backward
    that autograd runs), counted by torch's FlopCounterMode. Bytes: the fp32 stream of every
    block (the official dtype, also under autocast), read and written once per sub-block:
    forward, read x and write its output for the token mixer and again for the MLP (4 passes
    of the block's tensor); backward, read the output's gradient and the input and write the
    input's gradient for each (6 more). The stem's and downsamplings' inputs and outputs and
    the output norms likewise; the weights read once (training: twice, and their gradients
    written). Nothing else is counted: the MLP's hidden tensor, norm statistics and the
    reductions of their gradients are taken to stay in the caches, so the bound is below
    what any implementation can reach.
    """
    from torch.utils.flop_counter import FlopCounterMode
    elems = []  # (numel, passes) of each fp32 tensor the step must move

    def block_hook(module, inputs, output):
        elems.append((output.numel(), 10 if train else 4))

    def layer_hook(module, inputs, output):
        needs_grad = inputs[0].requires_grad  # the stem's input gets no gradient
        elems.append((inputs[0].numel(), (1 + 1 + needs_grad) if train else 1))
        elems.append((output.numel(), 2 if train else 1))

    hooks = []
    for name, module in ref.named_modules():
        if isinstance(module, OfficialBlock):
            hooks.append(module.register_forward_hook(block_hook))
        elif (isinstance(module, OfficialEmbed)
              or (name.startswith('norm') and '.' not in name)):
            hooks.append(module.register_forward_hook(layer_hook))
    params = sum(p.numel() for p in ref.parameters())
    try:
        with FlopCounterMode(display=False) as counter:
            step_fn(ref, x, train, 'fp32')()
    finally:
        for hook in hooks:
            hook.remove()
    moved = 4 * (sum(n * passes for n, passes in elems) + params * (3 if train else 1))
    return counter.get_total_flops(), moved


def least_time(ref, x, train, gemm_peak, bandwidth, cost=None):
    """Seconds a step cannot beat on this machine, as (GEMM, memory): its GEMM FLOPs at
    ``gemm_peak`` (FLOP/s) and the bytes it must move at ``bandwidth`` (bytes/s), from
    ``step_cost`` (or ``cost``, its result, when already counted)."""
    flops, moved = cost or step_cost(ref, x, train)
    return flops / gemm_peak, moved / bandwidth


LOW_DTYPES = {'bf16': torch.bfloat16, 'fp16': torch.float16}


def paired(arch, out_indices=(0, 1, 2, 3)):
    """(reference, ours) holding the same random weights."""
    ours, ref = testing.paired('PoolFormer', arch=arch, out_indices=out_indices)
    return ref, ours


def forward_flops(model, x):
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.eval()(x)
    return counter.get_total_flops()


def step_fn(model, x, train, dtype):
    def run():
        with torch.autocast(x.device.type, dtype=LOW_DTYPES.get(dtype),
                            enabled=dtype in LOW_DTYPES):
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
    device = args.device
    ref, ours = paired(arch)
    ref, ours = ref.to(device), ours.to(device)
    x = torch.randn(args.batch, 3, *args.size, device=device)
    flops = forward_flops(ref, x)
    with torch.no_grad():
        expected = ref.eval()(x)
        got = ours.eval()(x)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            got_bf16 = ours(x)
    err = max(((e - g).abs().max() / e.abs().max()).item() for e, g in zip(expected, got))
    cos = min(torch.nn.functional.cosine_similarity(e.flatten().double(),
                                                    g.float().flatten().double(), dim=0).item()
              for e, g in zip(expected, got_bf16))
    print(f'\n## {arch}, batch {args.batch}, {args.size[0]}x{args.size[1]}: '
          f'{flops / 1e9:.1f} GFLOP forward; ours vs reference: max rel. error fp32 '
          f'{err:.1e}, bf16 cosine {cos:.5f}')
    roofline = ' % of least time |' if args.roofline else ''
    print('| mode | impl | s/step | img/s | GFLOP/s | % of matmul peak | speed-up |' + roofline)
    print('|---|---|---|---|---|---|---|' + '---|' * bool(roofline))
    ref_cl = x_cl = None
    if args.channels_last_reference:
        # The same reference code on channels_last tensors: what a user can get from the
        # official definition without this package.
        ref_cl = copy.deepcopy(ref).to(memory_format=torch.channels_last)
        x_cl = x.contiguous(memory_format=torch.channels_last)
    compiled = _compiled_pair(ref, ours) if args.compile else {}
    # The counts do not depend on the dtype, only the peak they are divided by.
    costs = {train: step_cost(ref, x, train) for train in (False, True)} if args.roofline \
        else {}
    fp32_ref_eval = None
    for dtype in ('fp32', 'bf16') + (('fp16', ) if device.type == 'cuda' else ()):
        for train in (False, True):
            mode = f'{dtype} {"train" if train else "eval"}'
            step_flops = flops * (3 if train else 1)
            peak = peaks[dtype if dtype == 'fp32' else 'bf16']
            bound = (least_time(ref, x, train, peak * 1e9, peaks['bandwidth'], costs[train])
                     if costs else None)
            candidates = {'reference': step_fn(ref, x, train, dtype)}
            if ref_cl is not None:
                candidates['reference, channels_last'] = step_fn(ref_cl, x_cl, train, dtype)
            candidates['mmpoolformer'] = step_fn(ours, x, train, dtype)
            first = {}
            for name, model in compiled.items():
                candidates[name] = step_fn(model, x, train, dtype)
                first[name] = _first_call(candidates[name], device)
            times = timeit(candidates, args.repeat, device)
            if mode == 'fp32 eval':
                fp32_ref_eval = times['reference']
            for name, t in times.items():
                gflops = step_flops / t / 1e9
                speedup = times['reference'] / t
                extra = ''
                if dtype in LOW_DTYPES and not train:
                    extra = f' ({fp32_ref_eval / t:.2f}x vs fp32 reference)'
                if name in first:
                    extra += f'; first call {first[name]:.1f} s'
                share = (f' {100 * sum(bound) / t:.0f}% of {sum(bound):.3f} s ('
                         f'{bound[0]:.3f} GEMM + {bound[1]:.3f} memory) |' if bound else '')
                print(f'| {mode} | {name} | {t:.3f} | {args.batch / t:.2f} | {gflops:.0f} | '
                      f'{100 * gflops / peak:.0f}% | {speedup:.2f}x{extra} |{share}')


def _compiled_pair(ref, ours) -> dict:
    """The reference under plain ``torch.compile`` (its default options: what a user of the
    official code would write) and ours with ``compile=True`` (regional, symbolic sizes)."""
    from mmpoolformer.models.compile import compile_options
    ours_c = copy.deepcopy(ours)
    for stage in ours_c.stages:
        stage.compile_options = compile_options(True)
    return {'reference, compiled': torch.compile(copy.deepcopy(ref)),
            'mmpoolformer, compiled': ours_c}


def _first_call(fn, device) -> float:
    """Seconds of the first call (where torch.compile compiles)."""
    sync(device)
    t = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t


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


def _cuda_peak_mib(impl, with_cp, batch, h, w, device):
    """Peak CUDA memory of one training step minus the memory allocated before it (MiB)."""
    ref, ours = paired('s12')
    model = (ref if impl == 'reference' else ours).to(device).train()
    if impl != 'reference':
        for stage in model.stages:
            stage.with_cp = with_cp
    x = torch.randn(batch, 3, h, w, device=device)
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    sum(o.mean() for o in model(x)).backward()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - before) / 2**20


def _rss_peak_mib(impl, with_cp, batch, h, w):
    """Peak RSS of one training step in a fresh process minus RSS before it (MiB)."""
    # With glibc's dynamic mmap threshold, freed activation buffers stay in the heap
    # and inflate the high-water mark unpredictably; a fixed threshold maps every large
    # tensor and returns it on free, so peak RSS follows the live tensors.
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_='65536')
    out = subprocess.run([sys.executable, __file__, '--memory-child', impl,
                          str(int(with_cp)), str(batch), str(h), str(w)],
                         capture_output=True, text=True, env=env)
    if out.returncode:
        sys.exit(out.stderr)
    return float(out.stdout.split()[-1])


def bench_memory(args):
    h, w, batch = 800, 1216, 2
    cuda = args.device.type == 'cuda'
    how = ('torch.cuda.max_memory_allocated during one step minus before' if cuda else
           'peak RSS during one step minus RSS before it')
    print(f'\n## Peak training memory, S12, batch {batch}, {h}x{w}, fp32 ({how})')
    print('| impl | MiB | reference / this |')
    print('|---|---|---|')
    results = {}
    for impl, cp in (('reference', False), ('mmpoolformer', False), ('mmpoolformer', True)):
        mib = (_cuda_peak_mib(impl, cp, batch, h, w, args.device) if cuda
               else _rss_peak_mib(impl, cp, batch, h, w))
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
    parser.add_argument('--compile', action='store_true',
                        help='also time both compiled (the reference with torch.compile, '
                             'ours with compile=True), and their first, compiling call')
    parser.add_argument('--cold', action='store_true',
                        help='with --compile: no compile caches (Inductor, AOTAutograd), so '
                             'that first calls show cold compile times')
    parser.add_argument('--roofline', action='store_true',
                        help="also each step's share of the least time this machine allows "
                             '(GEMM FLOPs at the matmul peak plus the bytes it must move at '
                             'the measured memory bandwidth)')
    parser.add_argument('--memory', action='store_true')
    parser.add_argument('--detector', action='store_true')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'),
                        help='cpu (default) or cuda')
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: torch sees no CUDA device here')
    if args.device == 'cuda' and args.detector:
        sys.exit('--detector runs on the CPU only (mmdet needs mmcv ops built for CUDA)')
    args.device = torch.device(args.device)
    if args.cold and not args.compile:
        sys.exit('--cold applies to --compile only: add --compile, or drop --cold')
    if args.compile:
        from mmpoolformer import compat
        if compat.compile_unsupported():
            sys.exit(f'--compile: {compat.compile_unsupported()}')
    if args.cold:
        torch._inductor.config.force_disable_caches = True
    torch.manual_seed(0)
    peaks = {'fp32': matmul_peak(torch.float32, args.device),
             'bf16': matmul_peak(torch.bfloat16, args.device)}
    if args.roofline:
        peaks['bandwidth'] = memory_bandwidth(args.device)
    where = (torch.cuda.get_device_name() if args.device.type == 'cuda'
             else f'{torch.get_num_threads()} CPU threads')
    print(f'torch {torch.__version__}, {where}; measured matmul peak: fp32 '
          f'{peaks["fp32"]:.0f} GFLOP/s, bf16 {peaks["bf16"]:.0f} GFLOP/s'
          + (f'; memory bandwidth {peaks["bandwidth"] / 1e9:.1f} GB/s' if args.roofline
             else ''))
    for arch in args.archs:
        bench_arch(arch, args, peaks)
    if args.memory:
        bench_memory(args)
    if args.detector:
        bench_detector(args)


if __name__ == '__main__':
    main()
