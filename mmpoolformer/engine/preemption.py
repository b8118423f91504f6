"""A stop signal ends training with a checkpoint, at the next iteration, and a known exit code.

Schedulers stop long runs with a signal and a grace period before the kill: Slurm's time
limit (with ``--signal``) and preemption, Kubernetes, spot instances (SIGTERM). mmengine
installs no handler, so the signal ends the run at once and everything since the last
periodic checkpoint is lost. ``PreemptionHook`` (on by default in ``tools/train.py``):

- the signal handler only records the signal (nothing else is safe inside a handler). It
  is installed when the hook is built, before mmengine builds the dataloaders;
- dataloader workers ignore the stop signals, which a scheduler may send to every process
  of the job (Slurm does): PyTorch's workers die on SIGTERM and the others' default action
  is to die too, and the training process then fails at an arbitrary point, with
  "DataLoader worker ... is killed by signal", before it can checkpoint. mmengine builds
  the dataloaders (``Runner.build_dataloader``) and starts iterating at once, with no hook
  in between, so while a hook is active that builder appends the ignoring of the signals
  to each loader's ``worker_init_fn`` (``_protect_workers``: a wrapper, installed once).
  At exit, multiprocessing stops the workers that are still running with SIGTERM and
  waits for them, which would now wait forever: those workers are killed first (what
  PyTorch's workers do on their parent's SIGTERM anyway);
- after each training iteration, every rank learns whether any rank got a signal (one
  ``all_reduce`` of a flag), so all ranks stop after the same iteration;
- that iteration's state is saved as ``iter_<N>.pth`` through mmengine's
  ``Runner.save_checkpoint`` (model, optimizer, AMP loss scaler, parameter schedulers, the
  message hub, the iteration, and every hook's ``before_save_checkpoint``: the torch RNG
  state of ``RNGStateHook``), atomically (``atomic_io``), and ``last_checkpoint`` names it;
- rank 0 writes ``<work_dir>/preempted`` (JSON: the iteration, the checkpoint, the signal),
  and the run exits with ``EXIT_PREEMPTED`` (75, ``EX_TEMPFAIL``: "try again later").
  ``tools/slurm_train.sh`` takes either as "requeue me" (a launcher may report another
  exit status: one that kills the other ranks when the first one exits, for instance);
  ``--resume`` continues from the checkpoint. Every run removes the marker when it starts.

A signal during validation stops the validation at its next batch (all ranks together),
saves the state of the last training iteration and exits the same way; the interrupted
validation is not repeated after the resume. Repeated signals change nothing: the stop is
already on its way, and a save in progress completes (a SIGKILL during the save leaves the
previous checkpoint valid: the new one is written to a temporary file and renamed). A
second Ctrl-C before the save starts stops at once, as Python's default does.
"""
import atexit
import functools
import json
import multiprocessing
import os
import os.path as osp
import signal
import threading
import time
from typing import Optional, Sequence, Union

import torch
from mmengine.dist import all_reduce, barrier, is_main_process
from mmengine.fileio import put_text
from mmengine.hooks import CheckpointHook, Hook
from mmengine.runner import Runner
from torch.utils.data import DataLoader

from ..registry import HOOKS

# sysexits.h EX_TEMPFAIL ("temporary failure; the user is invited to retry"): the run
# was stopped by a signal after saving a checkpoint, and resuming continues it.
EXIT_PREEMPTED = 75
DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1', 'SIGINT')
# In the work dir: written (rank 0) when a run stops on a signal, removed when a run starts.
MARKER = 'preempted'


# The stop signals of the hooks built in this process: what dataloader workers ignore.
_WORKER_IGNORES: set = set()


def _worker_init_ignoring(init_fn, signals, worker_id: int) -> None:
    if init_fn is not None:
        init_fn(worker_id)
    for sig in signals:
        signal.signal(sig, signal.SIG_IGN)


def _kill_workers_left() -> None:
    """At exit, before multiprocessing's own exit function (atexit runs in reverse order):
    kill the daemonic children (dataloader workers) that its SIGTERM would not stop."""
    for child in multiprocessing.active_children():
        if child.daemon:
            child.kill()


def _protect_workers() -> None:
    """Wrap ``Runner.build_dataloader`` (once) so that workers ignore ``_WORKER_IGNORES``."""
    build = Runner.build_dataloader
    if getattr(build, 'ignores_stop_signals', False):
        return
    atexit.register(_kill_workers_left)

    @functools.wraps(build)
    def build_dataloader(*args, **kwargs):
        loader = build(*args, **kwargs)
        if _WORKER_IGNORES and isinstance(loader, DataLoader) and loader.num_workers > 0:
            loader.worker_init_fn = functools.partial(
                _worker_init_ignoring, loader.worker_init_fn, tuple(sorted(_WORKER_IGNORES)))
        return loader

    build_dataloader.ignores_stop_signals = True
    Runner.build_dataloader = staticmethod(build_dataloader)


class Preempted(SystemExit):
    """Ends the run with ``EXIT_PREEMPTED`` once the checkpoint is saved (a SystemExit:
    no traceback, and the process's exit status is the code)."""


def parse_signals(names: Union[str, Sequence[Union[str, int]], None]) -> list:
    """Signal numbers from names ('SIGTERM', 'TERM', 'term') or numbers; 'none', None or an
    empty list: none. Raises ValueError naming the bad entry and the valid names."""
    if isinstance(names, (str, int)):
        names = [names]
    if names is None or [str(n).lower() for n in names] == ['none']:
        return []
    found = []
    for name in names:
        if isinstance(name, int) and not isinstance(name, bool):
            number = name
        else:
            text = str(name).upper()
            text = text if text.startswith('SIG') else f'SIG{text}'
            number = getattr(signal.Signals, text, None)
        if number is None or number not in {s.value for s in signal.Signals} or \
                number in (signal.SIGKILL, signal.SIGSTOP):
            valid = ', '.join(DEFAULT_SIGNALS + ('SIGUSR2', 'SIGHUP', 'SIGQUIT'))
            raise ValueError(f'stop signal {name!r}: not a signal that can be caught; use '
                             f'names such as {valid}, or none')
        found.append(signal.Signals(number))
    return found


@HOOKS.register_module()
class PreemptionHook(Hook):
    """Checkpoint and exit with ``exit_code`` after the iteration in which a stop signal
    arrives (see the module docstring).

    Args:
        signals (sequence of str | int | None): The signals that stop the run. Default:
            SIGTERM, SIGUSR1, SIGINT. None or 'none': the hook does nothing.
        exit_code (int): The exit status after the checkpoint. Default: 75.
    """

    # After every other hook of an iteration: the optimizer step, the schedulers and the
    # periodic checkpoint belong to the iteration that is saved.
    priority = 'LOWEST'

    def __init__(self, signals: Optional[Sequence[Union[str, int]]] = DEFAULT_SIGNALS,
                 exit_code: int = EXIT_PREEMPTED):
        self.signals = parse_signals(signals)
        if not isinstance(exit_code, int) or not 1 <= exit_code <= 255 or exit_code == 1:
            raise ValueError(f'exit_code must be an int in 2..255 (1 means a failure), got '
                             f'{exit_code!r}')
        self.exit_code = exit_code
        self.received: Optional[signal.Signals] = None
        self._saving = False
        self._training = False
        self._previous = {}
        self._pid = os.getpid()
        # Python runs signal handlers in the main thread only (where Runner builds hooks).
        self._installed = bool(self.signals) and \
            threading.current_thread() is threading.main_thread()
        for sig in self.signals if self._installed else ():
            self._previous[sig] = signal.signal(sig, self._handle)
        if self._installed:
            _WORKER_IGNORES.update(self.signals)
            _protect_workers()

    # ------------------------------------------------------------------ the handler
    def before_run(self, runner) -> None:
        if not self.signals:
            return
        marker = osp.join(runner.work_dir, MARKER)
        if is_main_process() and osp.exists(marker):
            os.remove(marker)
        if not self._installed:
            runner.logger.warning('PreemptionHook: built outside the main thread, where '
                                  'Python runs signal handlers; stop signals keep their '
                                  'default actions')
            return
        runner.logger.info(
            f'Stop signals ({", ".join(s.name for s in self.signals)}) save a checkpoint after '
            f'the current iteration and exit with {self.exit_code}; resume with --resume')

    def after_run(self, runner) -> None:
        self._restore()

    def _restore(self) -> None:
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        _WORKER_IGNORES.difference_update(self.signals)

    def _handle(self, signum, frame) -> None:
        if os.getpid() != self._pid:
            return  # a forked process (before its own handlers): the training process decides
        name = signal.Signals(signum).name
        if self.received is None:
            self.received = signal.Signals(signum)
            note = (f'{name}: saving a checkpoint after this iteration, then exiting with '
                    f'{self.exit_code}')
        elif self._saving:
            note = f'{name} again: the checkpoint is being saved; it completes first'
        elif signum == signal.SIGINT and self.received == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now, as Python's default does
        else:
            note = f'{name} again: already stopping after this iteration'
        # (no logging module here: a handler may interrupt code that holds its locks)
        os.write(2, f'[mmpoolformer] {note}\n'.encode())

    # ------------------------------------------------------------------ the stop
    def _stop_agreed(self) -> bool:
        """Whether any rank got a stop signal (every rank gets the same answer)."""
        flag = torch.tensor([0 if self.received is None else 1])
        all_reduce(flag, op='max')
        return bool(flag.item())

    def before_train(self, runner) -> None:
        self._training = True

    def after_train(self, runner) -> None:
        self._training = False

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.signals and self._stop_agreed():
            # (the loop counts the iteration after its hooks: runner.iter is still its index)
            self._save_and_exit(runner, completed=runner.iter + 1)

    def after_val_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if self.signals and self._training and self._stop_agreed():
            # validation runs after the loop counted the last training iteration
            self._save_and_exit(runner, completed=runner.iter)

    def _save_and_exit(self, runner, completed: int) -> None:
        self._saving = True
        checkpoint_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)),
                               None)
        out_dir = getattr(checkpoint_hook, 'out_dir', None) or runner.work_dir
        backend_args = getattr(checkpoint_hook, 'backend_args', None)
        filename = f'iter_{completed}.pth'
        path = osp.join(out_dir, filename)
        runner.message_hub.update_info('last_ckpt', path)
        # runner.epoch: the epoch in progress (epoch-based loops resume inside it)
        runner.save_checkpoint(out_dir, filename, save_optimizer=True,
                               save_param_scheduler=True, by_epoch=False,
                               meta=dict(epoch=runner.epoch, iter=completed),
                               backend_args=backend_args)
        name = self.received.name if self.received is not None else 'another rank\'s signal'
        if is_main_process():
            put_text(path, osp.join(runner.work_dir, 'last_checkpoint'))
            put_text(json.dumps(dict(iter=completed, checkpoint=path, signal=name,
                                     exit_code=self.exit_code, time=time.time())),
                     osp.join(runner.work_dir, MARKER))
        barrier()  # no rank exits (and makes a launcher stop the others) before the save
        runner.logger.info(f'Stopped by {name} after iteration {completed}: saved {path}; '
                           f'exiting with {self.exit_code} (resume with --resume)')
        # From here to the exit, stop signals are ignored: Python resets its own handlers
        # to the default action while it shuts down, and a signal then would end the
        # process with that signal instead of the exit code.
        for sig in self.signals if self._installed else ():
            signal.signal(sig, signal.SIG_IGN)
        raise Preempted(self.exit_code)


def enable_preemption(cfg, signals=DEFAULT_SIGNALS) -> bool:
    """Add ``PreemptionHook(signals)`` to ``cfg.custom_hooks`` (unless the config has one),
    and resume epoch-based training inside an epoch (``loops.EpochBasedTrainLoop``).
    Returns whether stop signals are handled; ``signals`` None/'none'/[]: not at all."""
    hooks = list(cfg.get('custom_hooks') or [])
    names = ('PreemptionHook', 'mmpoolformer.PreemptionHook')
    if not parse_signals(signals):
        cfg.custom_hooks = [h for h in hooks if h.get('type') not in names]
        return False
    if not any(h.get('type') in names for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='mmpoolformer.PreemptionHook',
                                         signals=[s.name for s in parse_signals(signals)])]
    train_cfg = cfg.get('train_cfg')
    if train_cfg is not None and (
            train_cfg.get('type') in ('EpochBasedTrainLoop', 'mmengine.EpochBasedTrainLoop')
            or ('type' not in train_cfg and train_cfg.get('by_epoch'))):
        train_cfg.pop('by_epoch', None)
        train_cfg['type'] = 'mmpoolformer.EpochBasedTrainLoop'
    return True
