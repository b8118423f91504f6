"""Checkpoints through the command line: unsafe, missing, truncated and foreign files are
refused with one line naming the file and why; honest mmengine checkpoints load.

Every entry point that reads a checkpoint: ``tools/train.py --resume CKPT``, ``--resume``
(the work dir's last_checkpoint), ``--load-from CKPT`` and ``tools/test.py CONFIG CKPT``.
"""
import os
import re

import numpy as np
import pytest
import torch
from mmengine.logging import HistoryBuffer

from .cli import config, run_batch, run_cli, tiny_options

CASE = 'retinanet'
REFUSED = r"ERROR: refused to load {}: it is not a plain-data checkpoint \(it would import " \
          r"(posix|os|nt)\.system\)"


class _RunsCode:
    """Unpickling this runs ``touch marker``: what a malicious checkpoint does."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}', )


def plausible_checkpoint():
    """The kinds of objects an mmengine checkpoint holds (tensors, numpy, HistoryBuffer)."""
    buffer = HistoryBuffer()
    buffer.update(1.5)
    return {'meta': {'iter': 1, 'seed': np.int64(0)}, 'state_dict': {'w': torch.ones(64, 64)},
            'message_hub': {'log_scalars': {'train/loss': buffer}}}


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('checkpoints')
    paths = {name: root / f'{name}.pth' for name in ('evil', 'truncated', 'text')}
    marker = root / 'pwned'
    torch.save({'meta': {'iter': 1}, 'state_dict': {'w': _RunsCode(marker)}}, paths['evil'])
    torch.save(plausible_checkpoint(), paths['truncated'])
    data = paths['truncated'].read_bytes()
    paths['truncated'].write_bytes(data[:len(data) // 2])  # a copy interrupted half-way
    paths['text'].write_text('epoch 12: loss 0.31\n')  # e.g. a log file passed by mistake
    paths['missing'] = root / 'no_such.pth'
    return paths, marker


def fit_argv(shapes, work_dir, *extra, iters=1):
    return [config(CASE), '--work-dir', work_dir, *extra, '--cfg-options',
            *tiny_options(CASE, shapes, iters, 'train_cfg.val_begin=100')]


def eval_argv(shapes, work_dir, checkpoint):
    return [config(CASE), checkpoint, '--work-dir', work_dir, '--cfg-options',
            *tiny_options(CASE, shapes)]


@pytest.fixture(scope='module')
def results(shapes, files, tmp_path_factory):
    """All calls in one child process; {name: (exit status, message)}."""
    paths, _ = files
    tmp = tmp_path_factory.mktemp('runs')
    honest = tmp / 'trained' / 'iter_1.pth'
    calls = {'train 1 iteration': ('train', fit_argv(shapes, tmp / 'trained'))}
    # Honest checkpoint written by the run above: each entry point must accept it.
    calls['honest --resume'] = ('train', fit_argv(shapes, tmp / 'r', '--resume', honest))
    # 0 iterations: the load is what is tested, not training.
    calls['honest --load-from'] = ('train', fit_argv(shapes, tmp / 'l', '--load-from',
                                                     honest, iters=0))
    calls['honest test.py'] = ('test', eval_argv(shapes, tmp / 't', honest))
    for fault in ('evil', 'truncated', 'text', 'missing'):
        path = paths[fault]
        calls[f'{fault} --resume'] = ('train', fit_argv(shapes, tmp / f'{fault}-r',
                                                        '--resume', path))
        calls[f'{fault} --load-from'] = ('train', fit_argv(shapes, tmp / f'{fault}-l',
                                                           '--load-from', path))
        calls[f'{fault} test.py'] = ('test', eval_argv(shapes, tmp / f'{fault}-t', path))
        # `--resume` without a path reads the work dir's last_checkpoint.
        auto = tmp / f'{fault}-auto'
        auto.mkdir()
        (auto / 'last_checkpoint').write_text(str(path))
        calls[f'{fault} --resume (last_checkpoint)'] = ('train', fit_argv(shapes, auto,
                                                                          '--resume'))
    # mmengine writes last_checkpoint in place: a kill at that moment leaves it empty.
    empty = tmp / 'empty-auto'
    empty.mkdir()
    (empty / 'last_checkpoint').write_text('')
    torch.save({}, empty / 'iter_3.pth')
    calls['empty last_checkpoint'] = ('train', fit_argv(shapes, empty, '--resume'))
    outcome = dict(zip(calls, run_batch(list(calls.values()), tmp)))
    return outcome, tmp


@pytest.mark.slow
def test_honest_checkpoints_load_on_every_path(results):
    outcome, tmp = results
    for name in ('train 1 iteration', 'honest --resume', 'honest --load-from',
                 'honest test.py'):
        assert outcome[name] == (0, ''), (name, outcome[name])
    def log(name):
        return next((tmp / name).glob('*/*.log')).read_text()

    assert f'Load checkpoint from {tmp}/trained/iter_1.pth' in log('l')
    # --resume continues at iteration 1 of 1: it resumed, and had nothing left to do.
    assert 'resumed epoch: 0, iter: 1' in log('r')
    assert not list((tmp / 'r').glob('*.pth'))


ENTRY_POINTS = ['--resume', '--load-from', 'test.py', '--resume (last_checkpoint)']
EXPECTED = {
    'evil': REFUSED,
    'truncated': r'ERROR: {} is not a readable PyTorch checkpoint: it is truncated \(the end '
                 r'of its zip archive is missing',
    'text': r"ERROR: {} is not a readable PyTorch checkpoint: it starts with b'epoc', not "
            r'with the zip archive or pickle that torch.save writes',
    'missing': r'ERROR: checkpoint file not found: {} \(give an existing local file',
}


@pytest.mark.slow
@pytest.mark.parametrize('fault', list(EXPECTED))
@pytest.mark.parametrize('entry', ENTRY_POINTS)
def test_bad_checkpoint_is_one_line_naming_it(results, files, fault, entry):
    outcome, _ = results
    status, message = outcome[f'{fault} {entry}']
    paths, marker = files
    assert status == 1, message
    assert re.fullmatch(EXPECTED[fault].format(re.escape(str(paths[fault]))) + '.*',
                        message), message
    assert '\n' not in message
    assert not marker.exists()


@pytest.mark.slow
@pytest.mark.parametrize('entry', ['--resume', '--load-from', 'test.py'])
def test_malicious_checkpoint_through_the_real_command_line(shapes, files, tmp_path, entry):
    """``python tools/...`` as typed, with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which makes
    torch.load unpickle anything unless its caller asks for weights_only explicitly (as
    mmengine does not): the file must still be refused and the code must not run."""
    paths, marker = files
    if entry == 'test.py':
        args = ['tools/test.py', *eval_argv(shapes, tmp_path, paths['evil'])]
    else:
        args = ['tools/train.py', *fit_argv(shapes, tmp_path, entry, paths['evil'])]
    status, log = run_cli(*args, env={'TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD': '1'})
    assert status == 1, log[-3000:]
    assert 'Traceback' not in log, log[-3000:]
    last = log.strip().splitlines()[-1]
    assert re.fullmatch(REFUSED.format(re.escape(str(paths['evil']))) + '.*', last), last
    assert not marker.exists()


@pytest.mark.slow
def test_empty_last_checkpoint_names_the_newest_checkpoint(results):
    outcome, tmp = results
    work_dir = tmp / 'empty-auto'
    assert outcome['empty last_checkpoint'] == (
        1, f'ERROR: {work_dir}/last_checkpoint is empty (the run was killed while writing '
           f'it?): name the checkpoint to resume from, e.g. --resume {work_dir}/iter_3.pth '
           f'(the newest)')
