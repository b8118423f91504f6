"""The allowlisting unpickler of a torch whose own ``weights_only`` allowlist is fixed.

torch < 2.4 has no ``torch.serialization.add_safe_globals``: its ``weights_only=True``
unpickler refuses mmengine's own checkpoints (numpy arrays and HistoryBuffer in the meta and
message hub) and cannot be taught otherwise. There, ``safe_load`` hands ``torch.load`` this
module as its ``pickle_module``: Python's unpickler with a ``find_class`` that creates only
allowlisted globals, the restriction that Python's pickle documentation gives for untrusted
data. Every class or function a pickle can call comes through ``find_class``, so nothing
outside the allowlist runs. The allowlist is what newer torch allows by default (tensors,
storages, containers, dtypes), plus what ``add_safe_globals`` adds: mmpoolformer's
``safe_globals()`` and a user's own types.

A refusal is a ``pickle.UnpicklingError`` that reads like torch's own ("Unsupported global:
GLOBAL module.name"), so that ``safe_load`` turns it into the same ``UnsafeCheckpointError``.
"""
import _compat_pickle
import codecs
import collections
import pickle
from typing import Any, Dict, Iterable

import torch

from .. import compat

_added: Dict[str, Any] = {}


def _name_of(obj) -> str:
    return f'{obj.__module__}.{obj.__qualname__}'


def add_safe_globals(items: Iterable) -> None:
    """Allow ``items`` (objects, or (object, 'module.name') pairs, as
    ``torch.serialization.add_safe_globals`` takes them) in every load of this unpickler."""
    for item in items:
        obj, name = item if isinstance(item, tuple) else (item, _name_of(item))
        _added[name] = obj


def get_safe_globals() -> list:
    """The (object, 'module.name') pairs added so far."""
    return [(obj, name) for name, obj in _added.items()]


def _torch_data_globals() -> Dict[str, Any]:
    """What torch >= 2.4 allows by default, where an older torch's own list lacks it: plain
    data types, every dtype, the tensor rebuild functions this torch has."""
    allowed = compat.torch_default_safe_globals()
    for obj in (collections.Counter, torch.device, bytearray, set, complex):
        allowed[_name_of(obj)] = obj
    allowed['_codecs.encode'] = codecs.encode  # how protocol 2 pickles bytes
    for value in vars(torch).values():
        if isinstance(value, torch.dtype):
            allowed[str(value)] = value
    for name in ('_rebuild_parameter_with_state', '_rebuild_tensor_v3',
                 '_rebuild_device_tensor_from_numpy', '_rebuild_nested_tensor'):
        if hasattr(torch._utils, name):
            allowed[f'torch._utils.{name}'] = getattr(torch._utils, name)
    return allowed


class Unpickler(pickle.Unpickler):
    """Python's unpickler, creating only allowlisted globals."""

    _allowed = None

    def find_class(self, module: str, name: str):
        if Unpickler._allowed is None:
            Unpickler._allowed = _torch_data_globals()
        # Protocol 2 (torch.save's) writes Python 2 names, e.g. __builtin__.set; Python's
        # own find_class maps them, as fix_imports asks.
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        else:
            module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        full = f'{module}.{name}'
        obj = _added.get(full, Unpickler._allowed.get(full))
        if obj is None:
            raise pickle.UnpicklingError(
                f'Weights only load failed. Unsupported global: GLOBAL {full} was not an '
                f'allowed global by default.')
        return obj


def load(file, **kwargs):
    """``pickle.load`` with the restricted ``Unpickler`` (torch.load calls it for the legacy
    format's header)."""
    return Unpickler(file, **kwargs).load()
