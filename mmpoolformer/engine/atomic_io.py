"""Atomic local file writes for everything mmengine saves (checkpoints, last_checkpoint).

mmengine 0.10.7's LocalBackend.put opens the final path and writes into it: a run killed
while saving leaves a truncated checkpoint where the last good one was (and
``last_checkpoint`` may point at it). Here the bytes go to a temporary file in the same
directory, are fsync'ed, and replace the target with ``os.replace``, which is atomic on
POSIX: readers see the old file or the new one, never a part. The backend is registered
as mmengine's 'local' backend when mmpoolformer is imported.
"""
import os
import os.path as osp
import tempfile
from pathlib import Path
from typing import Union

from mmengine.fileio import io as mmengine_io
from mmengine.fileio.backends import LocalBackend, register_backend


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
    # Drop LocalBackend instances mmengine may have cached before this registration.
    for key in [k for k, v in mmengine_io.backend_instances.items()
                if type(v) is LocalBackend]:
        del mmengine_io.backend_instances[key]
