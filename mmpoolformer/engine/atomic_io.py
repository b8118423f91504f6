"""Atomic local file writes for everything mmengine saves (checkpoints, last_checkpoint).

mmengine 0.10.7's LocalBackend.put opens the final path and writes into it: a run killed
while saving leaves a truncated checkpoint where the last good one was (and
``last_checkpoint`` may point at it). Here the bytes go to a temporary file in the same
directory, are fsync'ed, and replace the target with ``os.replace``, which is atomic on
POSIX: readers see the old file or the new one, never a part. The backend is registered
as mmengine's 'local' backend when mmpoolformer is imported.

mmengine's CheckpointHook writes ``last_checkpoint`` with the builtin ``open`` instead of its
file backend. ``install_atomic_local_backend`` gives that one module an ``open`` that sends
writes of ``last_checkpoint`` through the atomic backend (everything else goes to the
builtin), so a kill can no longer leave it empty.
"""
import builtins
import io
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import io as mmengine_io
from mmengine.fileio.backends import LocalBackend, register_backend
from mmengine.hooks import checkpoint_hook


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


class AtomicLocalBackend(LocalBackend):

    def put(self, obj: bytes, filepath: Union[str, Path]) -> None:
        filepath = str(filepath)
        directory = osp.dirname(osp.abspath(filepath))
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{osp.basename(filepath)}.',
                                   suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as f:
                f.write(obj)
                f.flush()
                os.fsync(f.fileno())
            # mkstemp creates 0600; give the file the mode a plain open() would have.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, filepath)
        except BaseException:
            if osp.exists(tmp):
                os.unlink(tmp)
            raise

    def put_text(self, obj: str, filepath: Union[str, Path], encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)


def install_atomic_local_backend() -> None:
    register_backend('local', AtomicLocalBackend, force=True, prefixes='')
    install_atomic_last_checkpoint()
    # Drop LocalBackend instances mmengine may have cached before this registration.
    for key in [k for k, v in mmengine_io.backend_instances.items()
                if type(v) is LocalBackend]:
        del mmengine_io.backend_instances[key]


class _AtomicTextWriter(io.StringIO):
    """A text file opened for writing that appears at ``path`` whole, on close."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path

    def close(self):
        if not self.closed:
            AtomicLocalBackend().put_text(self.getvalue(), self.path)
        super().close()

    def __exit__(self, exc_type, *args):
        if exc_type is not None:  # an error while writing: keep the old file
            super().close()
        return super().__exit__(exc_type, *args)


def _checkpoint_hook_open(file, mode='r', *args, **kwargs):
    if mode == 'w' and osp.basename(str(file)) == 'last_checkpoint':
        return _AtomicTextWriter(str(file))
    return builtins.open(file, mode, *args, **kwargs)


def install_atomic_last_checkpoint() -> None:
    checkpoint_hook.open = _checkpoint_hook_open
