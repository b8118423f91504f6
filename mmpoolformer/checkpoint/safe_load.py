"""Loading checkpoints as data, never as code.

torch >= 2.6 unpickles with ``weights_only=True``: only tensors, containers, primitives and
allowlisted types can be created, so a malicious pickle cannot run code. mmengine 0.10.7
predates this and its own checkpoints hold a few non-tensor types (HistoryBuffer in the
message hub, numpy arrays and scalars in the meta), which makes ``--resume`` and
``tools/test.py`` fail out of the box. Instead of turning ``weights_only`` off, this module
allowlists exactly those types, in this one place. ``install_safe_globals`` is called when
``mmpoolformer`` is imported, so it is active in every load: ours, and mmengine's own
(Runner resume/load_from), which call ``torch.load`` with the default ``weights_only``.

It also routes mmengine's local checkpoint loader through ``load_checkpoint_file``. Two
reasons: mmengine's loader leaves ``weights_only`` to torch's default, which the environment
variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns off (an explicit ``weights_only=True``
is not affected); and a refused, truncated or foreign file then gets the same one-line
``CheckpointError`` on every path (``--resume``, ``load_from``, ``tools/test.py``, init_cfg).
``check_checkpoint_file`` makes the same checks without reading the tensors, so that the
tools refuse a bad file before they spend time building a model.
"""
import os
import os.path as osp
import pickle
import re

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or of the wrong model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (also a FileNotFoundError)."""


def _numpy_globals():
    multiarray = np.core.multiarray
    items = [
        (multiarray._reconstruct, 'numpy.core.multiarray._reconstruct'),
        (multiarray.scalar, 'numpy.core.multiarray.scalar'),
        (np.ndarray, 'numpy.ndarray'),
        (np.dtype, 'numpy.dtype'),
    ]
    # numpy >= 1.25 pickles a dtype through its class, e.g. numpy.dtypes.Float64DType.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in ('Float64DType', 'Float32DType', 'Float16DType', 'Int64DType',
                     'Int32DType', 'Int16DType', 'Int8DType', 'UInt8DType', 'BoolDType'):
            cls = getattr(dtypes, name, None)
            if cls is not None:
                items.append((cls, f'numpy.dtypes.{name}'))
    return items


def _history_buffer_getattr(obj, name):
    """Stands in for ``builtins.getattr`` while unpickling; resolves nothing but
    HistoryBuffer's statistics methods.

    A HistoryBuffer pickles its ``statistics_methods`` as ``getattr(HistoryBuffer, 'min')``
    and the like. Allowing the real ``getattr`` would let a pickle reach any attribute of
    any allowlisted object; this reaches only those methods.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    allowed = {'min', 'max', 'current', 'mean'} | set(HistoryBuffer._statistics_methods)
    if obj is HistoryBuffer and name in allowed:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({getattr(obj, "__name__", type(obj).__name__)}, {name!r}) is not allowed '
        f'in a checkpoint')


def safe_globals():
    """The types, beyond torch's defaults, that mmengine/mmdet/mmseg checkpoints contain."""
    from mmengine.logging.history_buffer import HistoryBuffer
    return [HistoryBuffer, (_history_buffer_getattr, 'builtins.getattr')] + _numpy_globals()


def install_safe_globals():
    """Allowlist ``safe_globals()`` for every ``weights_only`` load in this process, and
    make mmengine load local checkpoints through ``load_checkpoint_file``.

    This is what ``import mmpoolformer`` calls; see the module docstring.
    """
    torch.serialization.add_safe_globals(safe_globals())
    from mmengine.runner.checkpoint import CheckpointLoader

    # '' is mmengine's scheme for local paths (the fallback of every other prefix).
    CheckpointLoader.register_scheme(prefixes='', loader=_mmengine_local_loader, force=True)


def _mmengine_local_loader(filename, map_location):
    return load_checkpoint_file(filename, map_location=map_location)


# mmengine prints "Loads checkpoint by <name[10:]> backend": keep it reading "local".
_mmengine_local_loader.__name__ = 'load_from_local'


def _local_path(filename: str) -> str:
    if filename.startswith(('http://', 'https://')):
        cache = osp.join(torch.hub.get_dir(), 'checkpoints')
        os.makedirs(cache, exist_ok=True)
        path = osp.join(cache, osp.basename(filename.split('?')[0]))
        if not osp.exists(path):
            try:
                torch.hub.download_url_to_file(filename, path, progress=True)
            except Exception as e:  # network errors come in many types
                raise CheckpointError(f'could not download {filename}: {e}. Download it '
                                      f'by hand and pass the local path instead.') from None
        return path
    _check_exists(filename)
    return osp.expanduser(filename)


def _check_exists(filename: str) -> None:
    if not osp.isfile(osp.expanduser(filename)):
        raise CheckpointNotFoundError(
            f'checkpoint file not found: {filename} (give an existing local file or an '
            f'http(s) URL)')


# torch.save writes a zip archive (torch >= 1.6) or, in the legacy format, a pickle whose
# first opcode is PROTO (0x80). Anything else is not a checkpoint at all.
_ZIP, _PICKLE = b'PK\x03\x04', b'\x80'
# A zip archive ends with its end-of-central-directory record (22 bytes plus a comment of
# at most 64 KiB; torch writes none). A file cut off while written or copied has lost it.
_ZIP_END, _ZIP_END_WINDOW = b'PK\x05\x06', 22 + 65535
# What the weights_only unpickler (and _history_buffer_getattr) say when they refuse to
# create an object; other UnpicklingErrors mean the bytes are not a valid pickle.
_REFUSALS = ('GLOBAL', 'allowlisted', 'not allowed', 'reduce for unrecognized')


def _check_container(path: str, filename: str) -> bool:
    """Raise CheckpointError unless ``path`` looks like a whole torch.save file; return
    whether it is a zip archive. Reads the first 4 and the last 64 KiB bytes only."""
    with open(path, 'rb') as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(4)
        f.seek(max(size - _ZIP_END_WINDOW, 0))
        tail = f.read()
    if head.startswith(_ZIP):
        if _ZIP_END not in tail:
            raise CheckpointError(
                f'{filename} is not a readable PyTorch checkpoint: it is truncated (the end '
                f'of its zip archive is missing; {size} bytes), e.g. cut off while being '
                f'written or copied')
        return True
    if not head.startswith(_PICKLE):
        raise CheckpointError(
            f'{filename} is not a readable PyTorch checkpoint: it starts with {head!r}, '
            f'not with the zip archive or pickle that torch.save writes')
    return False


def _refusal_reason(message: str):
    """The line of an UnpicklingError that names what was refused, or None."""
    for line in message.splitlines():
        if any(word in line for word in _REFUSALS):
            found = re.search(r'GLOBAL (\S+)', line)
            return f'it would import {found.group(1)}' if found else line.strip()
    return None


def _torch_load(path: str, filename: str, **kwargs):
    """torch.load with ``weights_only=True``; every failure becomes one CheckpointError."""
    try:
        return torch.load(path, weights_only=True, **kwargs)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(str(e))
        if reason is None:
            raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint '
                                  f'(corrupt): {_first_line(e)}') from None
        raise CheckpointError(
            f'refused to load {filename}: it is not a plain-data checkpoint ({reason}). '
            f'mmpoolformer only unpickles tensors, containers and the allowlisted types '
            f'of mmpoolformer.checkpoint.safe_load.safe_globals().') from None
    except EOFError:  # a legacy (pickle) checkpoint that was cut off
        raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint: it is '
                              f'truncated (it ends inside its pickle)') from None
    except Exception as e:  # the unpickler fails on garbage with arbitrary error types
        raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint (truncated or '
                              f'another file format): {_first_line(e)}') from None


def load_checkpoint_file(filename: str, map_location='cpu'):
    """Load a checkpoint (local path or http(s) URL) with ``weights_only=True``.

    Raises:
        CheckpointNotFoundError: the path does not exist (a CheckpointError and a
            FileNotFoundError).
        CheckpointError: the file is truncated, not a checkpoint, or needs types that are
            not allowlisted (which is what a pickle that tries to run code looks like).
    """
    path = _local_path(str(filename))
    _check_container(path, filename)
    return _torch_load(path, filename, map_location=map_location)


def check_checkpoint_file(filename: str) -> None:
    """Raise what ``load_checkpoint_file`` would, without reading the tensors.

    For a quick check before minutes of building: the container is checked, and the
    pickle of a zip checkpoint is unpickled with the tensors memory-mapped (not read), so
    an unsafe file is refused here. URLs are left to the load.
    """
    filename = str(filename)
    if filename.startswith(('http://', 'https://')):
        return
    _check_exists(filename)
    path = osp.expanduser(filename)
    if _check_container(path, filename):
        _torch_load(path, filename, map_location='cpu', mmap=True)


def _first_line(error: BaseException) -> str:
    """The first sentence of an error message (torch appends paragraphs of advice)."""
    text = str(error).strip()
    return text.splitlines()[0].split('. ')[0] if text else type(error).__name__
