"""Loading checkpoints as data, never as code.

torch >= 2.6 unpickles with ``weights_only=True``: only tensors, containers, primitives and
allowlisted types can be created, so a malicious pickle cannot run code. mmengine 0.10.7
predates this and its own checkpoints hold a few non-tensor types (HistoryBuffer in the
message hub, numpy arrays and scalars in the meta), which makes ``--resume`` and
``tools/test.py`` fail out of the box. Instead of turning ``weights_only`` off, this module
allowlists exactly those types, in this one place. ``install_safe_globals`` is called when
``mmpoolformer`` is imported, so it is active in every load: ours, and mmengine's own
(Runner resume/load_from), which call ``torch.load`` with the default ``weights_only``.
"""
import os
import os.path as osp
import pickle

import numpy as np
import torch


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or of the wrong model."""


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
    """Allowlist ``safe_globals()`` for every ``weights_only`` load in this process."""
    torch.serialization.add_safe_globals(safe_globals())


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
    path = osp.expanduser(filename)
    if not osp.isfile(path):
        raise FileNotFoundError(f'checkpoint file not found: {filename}')
    return path


def load_checkpoint_file(filename: str, map_location='cpu'):
    """Load a checkpoint (local path or http(s) URL) with ``weights_only=True``.

    Raises:
        FileNotFoundError: the path does not exist.
        CheckpointError: the file is truncated, not a checkpoint, or needs types that are
            not allowlisted (which is what a pickle that tries to run code looks like).
    """
    path = _local_path(str(filename))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch's message is long; keep the line that names what was refused.
        lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
        reason = next((ln for ln in lines if 'Unsupported' in ln or 'not allowed' in ln),
                      lines[0] if lines else type(e).__name__)
        raise CheckpointError(
            f'refused to load {filename}: it is not a plain-data checkpoint ({reason}). '
            f'mmpoolformer only unpickles tensors, containers and the allowlisted types '
            f'of mmpoolformer.checkpoint.safe_load.safe_globals().') from None
    except Exception as e:  # the unpickler fails on garbage with arbitrary error types
        raise CheckpointError(
            f'{filename} is not a readable PyTorch checkpoint (truncated or another file '
            f'format): {str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__}'
        ) from None
