"""The one switch of the kernels layer: fast paths on (default) or the plain reference ops.

    MMPOOLFORMER_FAST_PATHS=0 python tools/train.py ...      # whole process, plain ops
    with mmpoolformer.models.kernels.fast_paths(False): ...   # one region of code

Tracing (torch.jit, FX), torch.export and ONNX export always see the plain ops: what
those tools and the exported graphs understand. torch.compile follows the switch and a
per-device choice (``kernels.COMPILED_FAST_PATHS``): the fast paths, as custom operators
it keeps in its graph, or the plain ops, which Inductor fuses into kernels of its own.
"""
import contextlib
import os

import torch

from ... import compat

ENV_VAR = 'MMPOOLFORMER_FAST_PATHS'
_OFF_VALUES = ('0', 'false', 'off', 'no')
# Process-wide, not thread-local: autograd runs CUDA backwards (and so the recomputation of
# with_cp's checkpointed blocks) in its own threads, which must take the same path.
_override = None


def _env_enabled() -> bool:
    value = os.environ.get(ENV_VAR, '1').strip().lower()
    if value not in _OFF_VALUES + ('1', 'true', 'on', 'yes', ''):
        raise ValueError(f'{ENV_VAR}={value!r}: use 1 (fast paths, the default) or 0 (plain '
                         f'reference ops)')
    return value not in _OFF_VALUES


def _graph_capture() -> bool:
    """True while torch.jit, FX, Dynamo (compile/export) or the ONNX exporter traces."""
    if compat.is_compiling() or torch.jit.is_tracing() or torch.jit.is_scripting():
        return True
    if torch.onnx.is_in_onnx_export():
        return True
    from torch.fx import _symbolic_trace as fx
    check = getattr(fx, 'is_fx_symbolic_tracing', None) or fx.is_fx_tracing
    return check()


def switch_on() -> bool:
    """The switch alone: the ``fast_paths`` override, else the environment variable."""
    return _env_enabled() if _override is None else _override


def fast_paths_enabled() -> bool:
    """Whether the kernels layer may take its fast paths now, outside torch.compile (which
    decides per device: ``kernels.COMPILED_FAST_PATHS``); False while a graph is traced."""
    if _graph_capture():
        return False
    return switch_on()


@contextlib.contextmanager
def fast_paths(enabled: bool = True):
    """Turn every fast path on or off inside the ``with`` block."""
    if not isinstance(enabled, bool):
        raise TypeError(f'fast_paths() takes True or False, got {enabled!r}')
    global _override
    previous, _override = _override, enabled
    try:
        yield
    finally:
        _override = previous
