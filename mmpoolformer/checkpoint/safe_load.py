"""Loading checkpoints as data, never as code.

Every load here unpickles with ``weights_only=True`` semantics: only tensors, containers,
primitives and allowlisted types can be created, so a malicious pickle cannot run code.
(torch >= 2.4 does it with its own unpickler, whose allowlist ``add_safe_globals`` extends;
an older torch's list is fixed, and there the restricted unpickler of
``restricted_unpickler.py`` does it, with the same allowlist and the same refusals.)
mmengine 0.10.7 predates this and its own checkpoints hold a few non-tensor types
(HistoryBuffer in the message hub, numpy arrays and scalars in the meta), which makes
``--resume`` and ``tools/test.py`` fail out of the box. Instead of turning ``weights_only``
off, this module allowlists exactly those types, in this one place.
``install_safe_globals`` is called when ``mmpoolformer`` is imported, so it is active in
every load: ours, and mmengine's own (Runner resume/load_from), which call ``torch.load``
with the default ``weights_only``. A user's own types are allowlisted the same way, with
``add_safe_globals`` (this module's, torch's own on torch >= 2.4): every load here honours
it.

``install_mmengine_loaders`` (also called on import, unless ``MMPOOLFORMER_SAFE_LOAD=0``)
routes mmengine's local and http(s) checkpoint loaders through ``load_checkpoint_file``.
Two reasons: mmengine's loaders leave ``weights_only`` to torch's default, which the
environment variable ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` turns off (an explicit
``weights_only=True`` is not affected); and a refused, truncated or foreign file then gets
the same one-line ``CheckpointError`` on every path (``--resume``, ``load_from``,
``tools/test.py``, init_cfg). ``check_checkpoint_file`` makes the same checks without
reading the tensors, so that the tools refuse a bad file before they spend time building a
model.

A URL is downloaded once into torch hub's cache, ``<torch.hub.get_dir()>/checkpoints/``
under the file name of the URL, the place and name that torch and mmengine use too. The
download goes to a temporary file next to it and is moved into place only after it has been
loaded: a cut-off or foreign download leaves nothing in the cache. A cached file that is
not a readable checkpoint is removed and downloaded again, once.
"""
import os
import os.path as osp
import pickle
import re
import tempfile
from logging import WARNING
from urllib.parse import urlparse

import numpy as np
import torch
from mmengine.logging import print_log

from .. import compat
from . import restricted_unpickler

# The environment variable that decides whether ``import mmpoolformer`` replaces mmengine's
# checkpoint loaders (see ``replaces_mmengine_loaders``).
SWITCH = 'MMPOOLFORMER_SAFE_LOAD'
_README = 'README, "What importing mmpoolformer changes"'


class CheckpointError(RuntimeError):
    """A checkpoint file that cannot be used: unreadable, unsafe, or of the wrong model."""


class CheckpointNotFoundError(CheckpointError, FileNotFoundError):
    """The checkpoint path does not exist (also a FileNotFoundError)."""


class UnsafeCheckpointError(CheckpointError):
    """The file needs a type that is not allowlisted, which is what a pickle that runs code
    looks like."""


# Every numeric, bool, str and bytes dtype: numpy arrays in a checkpoint's meta.
_NUMPY_DTYPES = ('BoolDType', 'Int8DType', 'Int16DType', 'Int32DType', 'Int64DType',
                 'LongLongDType', 'UInt8DType', 'UInt16DType', 'UInt32DType', 'UInt64DType',
                 'ULongLongDType', 'Float16DType', 'Float32DType', 'Float64DType',
                 'LongDoubleDType', 'Complex64DType', 'Complex128DType', 'StrDType',
                 'BytesDType')


def _numpy_globals():
    multiarray = np.core.multiarray
    items = [(np.ndarray, 'numpy.ndarray'), (np.dtype, 'numpy.dtype')]
    # numpy 2 pickles as numpy._core.multiarray what numpy 1 pickles as numpy.core.multiarray.
    for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
        items += [(multiarray._reconstruct, f'{module}._reconstruct'),
                  (multiarray.scalar, f'{module}.scalar')]
    # The unpickler sets the state of a dtype only if the dtype's class is allowlisted, e.g.
    # numpy.dtypes.StrDType for an array of strings (numpy >= 1.25 has these classes).
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        for name in _NUMPY_DTYPES:
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


def add_safe_globals(items) -> None:
    """Allow the types or functions ``items`` (as ``torch.serialization.add_safe_globals``
    takes them) in every checkpoint load of this process, on every supported torch."""
    if compat.SAFE_GLOBALS_IN_TORCH:
        torch.serialization.add_safe_globals(items)
    else:
        restricted_unpickler.add_safe_globals(items)


def get_safe_globals() -> list:
    """Everything allowlisted so far by ``add_safe_globals`` (and by the import)."""
    if compat.SAFE_GLOBALS_IN_TORCH:
        return torch.serialization.get_safe_globals()
    return restricted_unpickler.get_safe_globals()


def install_safe_globals():
    """Allowlist ``safe_globals()`` for every ``weights_only`` load in this process.

    This only adds types that a load may create; it never refuses anything that loaded
    before. ``import mmpoolformer`` calls it.
    """
    add_safe_globals(safe_globals())


def replaces_mmengine_loaders() -> bool:
    """Whether ``import mmpoolformer`` calls ``install_mmengine_loaders``: yes unless the
    environment variable ``MMPOOLFORMER_SAFE_LOAD`` is ``0``."""
    value = os.environ.get(SWITCH, '1').strip()
    if value not in ('0', '1', ''):
        raise ValueError(f'{SWITCH} must be 1 (the default: mmengine loads checkpoints through '
                         f'mmpoolformer\'s loader) or 0 (mmengine\'s own loaders), got {value!r}')
    return value != '0'


_installed = False


def install_mmengine_loaders():
    """Make mmengine load local and http(s) checkpoints through ``load_checkpoint_file``.

    This is what mmengine's Runner (``resume``, ``load_from``), ``tools/test.py`` and
    ``mmengine.runner.load_checkpoint`` use. ``import mmpoolformer`` calls it unless
    ``MMPOOLFORMER_SAFE_LOAD=0``; see the module docstring.
    """
    global _installed
    from mmengine.runner.checkpoint import CheckpointLoader

    # '' is mmengine's scheme for local paths (the fallback of every other prefix).
    CheckpointLoader.register_scheme(prefixes='', loader=_mmengine_local_loader, force=True)
    CheckpointLoader.register_scheme(prefixes=('http://', 'https://'),
                                     loader=_mmengine_http_loader, force=True)
    _installed = True


def _mmengine_local_loader(filename, map_location):
    return _load(filename, map_location, _MMENGINE_HINT)


def _mmengine_http_loader(filename, map_location):
    return _load(filename, map_location, _MMENGINE_HINT)


# mmengine prints "Loads checkpoint by <name[10:]> backend": keep it reading "local"/"http".
_mmengine_local_loader.__name__ = 'load_from_local'
_mmengine_http_loader.__name__ = 'load_from_http'

# What to do about a refused file that one trusts. The environment variables matter only
# where mmengine loads the file (resume, load_from, tools/test.py).
_HINT = ('Only if you trust this file: allowlist its type with '
         'mmpoolformer.checkpoint.add_safe_globals before loading it.')
_MMENGINE_HINT = (f'Only if you trust this file: allowlist its type with '
                  f'mmpoolformer.checkpoint.add_safe_globals (e.g. in a module named in the '
                  f'config\'s custom_imports), or load it with mmengine\'s own loader: '
                  f'{SWITCH}=0 TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1, which can run code '
                  f'({_README}).')


def _is_url(filename: str) -> bool:
    return filename.startswith(('http://', 'https://'))


def cache_path(url: str) -> str:
    """Where a URL's checkpoint is cached: ``<torch.hub.get_dir()>/checkpoints/<file name>``,
    as torch and mmengine cache it (``torch.hub.get_dir()`` is ``$TORCH_HOME/hub``)."""
    name = osp.basename(urlparse(url).path)
    if not name:
        raise CheckpointError(f'{url} names no file to download (its path ends in "/")')
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


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


def _weights_only_load(path: str, **kwargs):
    """torch.load that creates only allowlisted types (see the module docstring)."""
    if compat.SAFE_GLOBALS_IN_TORCH:
        return torch.load(path, weights_only=True, **kwargs)
    return torch.load(path, weights_only=False, pickle_module=restricted_unpickler, **kwargs)


def _torch_load(path: str, filename: str, hint: str = _HINT, **kwargs):
    """torch.load with ``weights_only=True``; every failure becomes one CheckpointError."""
    try:
        return _weights_only_load(path, **kwargs)
    except pickle.UnpicklingError as e:
        reason = _refusal_reason(str(e))
        if reason is None:
            raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint '
                                  f'(corrupt): {_first_line(e)}') from None
        raise UnsafeCheckpointError(
            f'refused to load {filename}: it is not a plain-data checkpoint ({reason}). '
            f'mmpoolformer only unpickles tensors, containers and the allowlisted types '
            f'of mmpoolformer.checkpoint.safe_globals(). {hint}') from None
    except EOFError:  # a legacy (pickle) checkpoint that was cut off
        raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint: it is '
                              f'truncated (it ends inside its pickle)') from None
    except Exception as e:  # the unpickler fails on garbage with arbitrary error types
        raise CheckpointError(f'{filename} is not a readable PyTorch checkpoint (truncated or '
                              f'another file format): {_first_line(e)}') from None


def _read(path: str, filename: str, map_location, hint: str):
    _check_container(path, filename)
    return _torch_load(path, filename, hint, map_location=map_location)


def _load_url(url: str, map_location, hint: str):
    """The checkpoint at ``url``, from torch hub's cache or downloaded into it."""
    path = cache_path(url)
    if not osp.exists(path):
        return _download(url, path, map_location, hint)
    print_log(f'loading {url} from the cache: {path}', logger='current')
    try:
        return _read(path, f'{path} (the cached download of {url})', map_location, hint)
    except UnsafeCheckpointError:
        raise  # a whole file that is refused: downloading it again would not change that
    except CheckpointError as e:
        corrupt = str(e)
    try:
        os.remove(path)
    except FileNotFoundError:  # another process removed it first
        pass
    print_log(f'{corrupt}. Removed it; downloading it again.', logger='current',
              level=WARNING)
    return _download(url, path, map_location, hint,
                     note=f' (The cached {path} was not a readable checkpoint and has been '
                          f'removed.)')


def _download(url: str, path: str, map_location, hint: str, note: str = ''):
    """Download ``url`` to a temporary file next to ``path``, load it, and only then move
    it to ``path``: a failed, cut-off or refused download leaves nothing in the cache."""
    directory = osp.dirname(path)
    try:
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f'.{osp.basename(path)}.',
                                   suffix='.download')
    except OSError as e:
        raise CheckpointError(f'cannot download {url} into torch hub\'s cache {directory}: '
                              f'{e.strerror}. Set TORCH_HOME to a writable directory, or '
                              f'give a local path instead of the URL.{note}') from None
    os.close(fd)
    try:
        print_log(f'downloading {url} to {path}', logger='current')
        try:
            torch.hub.download_url_to_file(url, tmp, progress=True)
        except Exception as e:  # network errors come in many types
            raise CheckpointError(
                f'could not download {url} to {path}: {_first_line(e)}. Check the URL and '
                f'the connection, or put the file there by hand (README, "Offline use").'
                f'{note}') from None
        try:
            checkpoint = _read(tmp, f'the download of {url}', map_location, hint)
        except UnsafeCheckpointError as e:
            raise UnsafeCheckpointError(f'{e} Nothing was saved to {path}.{note}') from None
        except CheckpointError as e:
            raise CheckpointError(f'{e}. Nothing was saved to {path}: run again to retry, or '
                                  f'put the file there by hand (README, "Offline use").'
                                  f'{note}') from None
        os.replace(tmp, path)
        return checkpoint
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _load(filename, map_location, hint):
    filename = str(filename)
    if _is_url(filename):
        return _load_url(filename, map_location, hint)
    _check_exists(filename)
    return _read(osp.expanduser(filename), filename, map_location, hint)


def load_checkpoint_file(filename: str, map_location='cpu'):
    """Load a checkpoint (local path or http(s) URL) with ``weights_only=True``.

    A URL is read from torch hub's cache (``cache_path``), downloaded into it first if it
    is not there; see the module docstring.

    Raises:
        CheckpointNotFoundError: the path does not exist (a CheckpointError and a
            FileNotFoundError).
        UnsafeCheckpointError: the file needs types that are not allowlisted (which is what
            a pickle that tries to run code looks like); a CheckpointError.
        CheckpointError: the file is truncated or not a checkpoint, or the download failed.
    """
    return _load(filename, map_location, _HINT)


def check_checkpoint_file(filename: str) -> None:
    """Raise what mmengine's load of ``filename`` would, without reading the tensors.

    For a quick check before minutes of building: the container is checked, and the
    pickle of a zip checkpoint is unpickled with the tensors memory-mapped (not read), so
    an unsafe file is refused here. With ``MMPOOLFORMER_SAFE_LOAD=0`` mmengine's own loader
    decides what is safe, so only the container is checked. URLs are left to the load.
    """
    filename = str(filename)
    if _is_url(filename):
        return
    _check_exists(filename)
    path = osp.expanduser(filename)
    if _check_container(path, filename) and _installed:
        _torch_load(path, filename, _MMENGINE_HINT, map_location='cpu', mmap=True)


def _first_line(error: BaseException) -> str:
    """The first sentence of an error message (torch appends paragraphs of advice)."""
    text = str(error).strip()
    return text.splitlines()[0].split('. ')[0] if text else type(error).__name__
