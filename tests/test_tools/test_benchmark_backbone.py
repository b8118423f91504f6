"""tools/analysis/benchmark_backbone.py runs and prints its side-by-side table.

Speed is not tested (benchmarks are not timed tests); the run checks that every mode has
both implementations, that the printed parity figures are within the issue's tolerances
and that the memory probe reports a positive figure for each variant.
"""
import importlib.util
import math
import os.path as osp
import re

import torch

from .tool_helpers import run

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_benchmark_prints_every_mode_for_both_implementations():
    rc, log = run('tools/analysis/benchmark_backbone.py', '--archs', 's12', '--size', '64',
                  '96', '--batch', '1', '--repeat', '1', '--channels-last-reference', '--roofline')
    assert rc == 0, log[-3000:]
    header = re.search(r'max rel\. error fp32 (\S+), bf16 cosine (\S+)', log)
    assert float(header.group(1)) < 1e-4 and float(header.group(2)) >= 0.999
    impls = ('reference', 'reference, channels_last', 'mmpoolformer')
    rows = re.findall(r'^\| (fp32|bf16) (eval|train) \| (reference|reference, channels_last|'
                      r'mmpoolformer) \| ([\d.]+) \|', log, re.M)
    assert sorted((d, m, i) for d, m, i, _ in rows) == sorted(
        (d, m, i) for d in ('fp32', 'bf16') for m in ('eval', 'train') for i in impls)
    assert all(float(t) > 0 for *_, t in rows)
    assert re.search(r'memory bandwidth [\d.]+ GB/s', log)
    shares = re.findall(r'\| (\d+)% of ([\d.]+) s \(([\d.]+) GEMM \+ ([\d.]+) memory\) \|$',
                        log, re.M)
    assert len(shares) == len(rows)
    assert all(0 < int(share) and float(bound) > 0 for share, bound, *_ in shares)


def _benchmark_module():
    spec = importlib.util.spec_from_file_location(
        'benchmark_backbone', osp.join(REPO, 'tools', 'analysis', 'benchmark_backbone.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_least_time_counts_the_steps_flops_and_the_fp32_stream():
    bench = _benchmark_module()
    ref, _ = bench.paired('s12')
    batch, size = 2, 64
    x = torch.randn(batch, 3, size, size)
    # Counted by hand for S12 (stem 7x7/4, then 3x3/2 downsamplings; depths 2, 2, 6, 2):
    dims, depths = (64, 128, 320, 512), (2, 2, 6, 2)
    sides = [size // 4 // 2**i for i in range(4)]
    stream = [batch * c * s * s for c, s in zip(dims, sides)]
    params = sum(p.numel() for p in ref.parameters())
    image = batch * 3 * size * size
    for train in (False, True):
        block, stem_in, layer_in, out = (10, 2, 3, 2) if train else (4, 1, 1, 1)
        elems = sum(d * n for d, n in zip(depths, stream)) * block
        elems += image * stem_in + stream[0] * out  # the stem
        elems += sum(stream[i] * layer_in + stream[i + 1] * out for i in range(3))
        elems += sum(n * (layer_in + out) for n in stream)  # output norms
        elems += params * (3 if train else 1)
        gemm, memory = bench.least_time(ref, x, train, gemm_peak=1.0, bandwidth=1.0)
        assert memory == 4 * elems
        # GEMM FLOPs: the forward's; training adds the weight gradients of every layer and
        # the input gradients of all but the stem (its input needs none).
        forward = bench.forward_flops(ref, x)
        stem = 2 * 3 * 49 * dims[0] * sides[0]**2 * batch
        assert math.isclose(gemm, 3 * forward - stem if train else forward, rel_tol=1e-9)


def test_memory_child_reports_peak_training_memory():
    for impl, cp in (('reference', '0'), ('mmpoolformer', '1')):
        rc, log = run('tools/analysis/benchmark_backbone.py', '--memory-child', impl, cp, '1',
                      '128', '160')
        assert rc == 0, log[-3000:]
        assert float(log.split()[-1]) > 0
