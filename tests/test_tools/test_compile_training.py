"""Compiled training from the config: ``--cfg-options model.backbone.compile=True`` through
tools/train.py, for the three quickstart models, with detection's varying image sizes, AMP,
DDP and resume (CPU Inductor)."""
import glob
import json
import os
import re

import pytest

from .test_train_test import CASES, REPO, free_port, run

COMPILE = 'model.backbone.compile=True'
# Detection batches change size: keep-ratio resizes of 0.75x-2x of 64 px, padded to
# multiples of 32 (64, 96 or 128 px).
VARYING = ['train_dataloader.dataset.pipeline.2.type=RandomResize',
           'train_dataloader.dataset.pipeline.2.scale=(64,64)',
           'train_dataloader.dataset.pipeline.2.ratio_range=(0.75,2.0)']
# Graphs one compiled block function may hold in these runs: block types x (view input or
# not) x (train, eval). More would mean a recompilation per image size.
MOST_GRAPHS = 8


def scalars(work_dir) -> list:
    """The training records mmengine wrote (one dict per logged iteration), of every run in
    the work dir (a resumed run writes a folder of its own), oldest first."""
    records = []
    for path in sorted(glob.glob(f'{work_dir}/*/vis_data/scalars.json')):
        with open(path) as f:
            records += [r for r in map(json.loads, f) if 'loss' in r]
    return records


def train(case, shapes, work_dir, *extra, iters=3, env=None, options=()):
    config, opts, _ = CASES[case]
    env = {**os.environ, 'TORCH_LOGS': 'dynamo', **(env or {})}
    rc, log = run('tools/train.py', config, '--work-dir', str(work_dir), *extra,
                  '--cfg-options', *opts(shapes, iters=iters), 'randomness.seed=0', *options,
                  env=env)
    assert rc == 0, log[-4000:]
    return log


def graphs(log: str) -> int:
    """Graphs compiled for the block function (Dynamo's log: one frame id per graph)."""
    return len(set(re.findall(r'\[(\d+/\d+)(?:_\d+)?\] Step 1: torchdynamo start tracing '
                              r'_call_block', log)))


@pytest.mark.slow
@pytest.mark.parametrize('case', ['retinanet', 'mask_rcnn', 'semantic_fpn'])
def test_compiled_training_starts_where_eager_does(case, shapes, tmp_path):
    varying = VARYING if case != 'semantic_fpn' else []
    train(case, shapes, tmp_path / 'eager', options=varying)
    log = train(case, shapes, tmp_path / 'compiled', options=[*varying, COMPILE])
    eager, compiled = scalars(tmp_path / 'eager'), scalars(tmp_path / 'compiled')
    # Same data, same initial weights: the first iteration's loss is eager's.
    assert abs(compiled[0]['loss'] - eager[0]['loss']) <= 1e-4 * abs(eager[0]['loss'])
    assert len(compiled) == len(eager) == 3
    assert 'torch._dynamo hit config.recompile_limit' not in log
    assert 1 <= graphs(log) <= MOST_GRAPHS, log[-3000:]


@pytest.mark.slow
def test_compiled_training_resumes(shapes, tmp_path):
    """A compiled run resumes from its checkpoint (the state_dict has no compile wrapper
    names), and continues compiled."""
    work_dir = tmp_path / 'run'
    train('semantic_fpn', shapes, work_dir, iters=2, options=[COMPILE])
    log = train('semantic_fpn', shapes, work_dir, '--resume', iters=3, options=[COMPILE])
    # It really resumed from iteration 2 (not a fresh run).
    assert 'Advance dataloader 2 steps' in log, log[-2000:]
    assert [r['iter'] for r in scalars(work_dir)][-1] == 3
    assert os.path.isfile(work_dir / 'iter_3.pth') and graphs(log) >= 1


@pytest.mark.slow
def test_compiled_amp_training_in_two_processes(shapes, tmp_path):
    """DDP (2 CPU processes, gloo) with the compiled backbone under bf16 autocast."""
    config, opts, _ = CASES['retinanet']
    work_dir = tmp_path / 'dist'
    rc, log = run('-m', 'torch.distributed.run', '--nproc_per_node=2',
                  f'--master_port={free_port()}', 'tools/train.py', config, '--launcher',
                  'pytorch', '--amp', '--work-dir', str(work_dir), '--cfg-options',
                  *opts(shapes, iters=2), *VARYING, COMPILE)
    assert rc == 0, log[-4000:]
    assert 'Distributed training: True' in log
    records = scalars(work_dir)
    assert len(records) == 2 and all(r['loss'] == r['loss'] for r in records)  # not NaN
    assert os.path.isfile(work_dir / 'iter_2.pth')


def graph_breaks_in_our_code(log: str) -> list:
    """The graph breaks that Dynamo logged (TORCH_LOGS=graph_breaks) with a frame of this
    package's code in their user stack."""
    package = os.path.join(REPO, 'mmpoolformer', '')
    breaks = re.split(r'(?=Graph break in user code|Graph break: )', log)[1:]
    return [b[:1500] for b in breaks if package in b]


@pytest.mark.slow
def test_mmengines_compile_has_no_graph_break_in_the_backbone(shapes, tmp_path):
    """mmengine's own ``compile=True`` (torch.compile of the whole train_step, none of the
    Dynamo settings of the backbone's switch), under bf16 autocast as the quickstarts
    train: mmengine's and mmseg's code break the graph (the backward, the optimizer step,
    the loss bookkeeping), the backbone never does."""
    log = train('semantic_fpn', shapes, tmp_path / 'run', '--amp', iters=2,
                env={'TORCH_LOGS': 'graph_breaks'}, options=['compile=True'])
    assert 'Graph break' in log  # the log is the one searched below
    assert graph_breaks_in_our_code(log) == []
