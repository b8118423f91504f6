"""tools/analysis/benchmark_backbone.py runs and prints its side-by-side table.

Speed is not tested (benchmarks are not timed tests); the run checks that every mode has
both implementations, that the printed parity figures are within the issue's tolerances
and that the memory probe reports a positive figure for each variant.
"""
import re

from .tool_helpers import run


def test_benchmark_prints_every_mode_for_both_implementations():
    rc, log = run('tools/analysis/benchmark_backbone.py', '--archs', 's12', '--size', '64',
                  '96', '--batch', '1', '--repeat', '1', '--channels-last-reference')
    assert rc == 0, log[-3000:]
    header = re.search(r'max rel\. error fp32 (\S+), bf16 cosine (\S+)', log)
    assert float(header.group(1)) < 1e-4 and float(header.group(2)) >= 0.999
    impls = ('reference', 'reference, channels_last', 'mmpoolformer')
    rows = re.findall(r'^\| (fp32|bf16) (eval|train) \| (reference|reference, channels_last|'
                      r'mmpoolformer) \| ([\d.]+) \|', log, re.M)
    assert sorted((d, m, i) for d, m, i, _ in rows) == sorted(
        (d, m, i) for d in ('fp32', 'bf16') for m in ('eval', 'train') for i in impls)
    assert all(float(t) > 0 for *_, t in rows)


def test_memory_child_reports_peak_training_memory():
    for impl, cp in (('reference', '0'), ('mmpoolformer', '1')):
        rc, log = run('tools/analysis/benchmark_backbone.py', '--memory-child', impl, cp, '1',
                      '128', '160')
        assert rc == 0, log[-3000:]
        assert float(log.split()[-1]) > 0
