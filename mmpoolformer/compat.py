"""What differs between the torch versions mmpoolformer supports, in this one module.

Supported: torch ``MIN_TORCH`` (2.1) up to ``NEWEST_TORCH`` (2.14), both ends tested
(docs/compatibility.md). Every other module asks this one for a mechanism and gets the
newest that the running torch has; where an older torch lacks one, the fallback computes the
same numbers:

- fast paths as ``torch.library.custom_op`` operators (torch >= 2.4: torch.compile keeps
  them in its graph), else as ``torch.autograd.Function``s with the same forward and
  backward code (eager only; under torch.compile the reference ops run instead);
- autocast queries by device (``torch.is_autocast_enabled(device)``, torch >= 2.4) or by the
  older per-device functions;
- checkpoint allowlists through ``torch.serialization.add_safe_globals`` (torch >= 2.4), else
  through the restricted unpickler of ``mmpoolformer.checkpoint`` (``SAFE_GLOBALS_IN_TORCH``);
- the backbones' ``compile`` switch needs custom operators and Dynamo's duck-sizing switch
  (torch >= 2.5): ``compile_unsupported`` says why not, in one line, on an older torch.

Features are detected (``hasattr``), not inferred from version numbers; only the supported
range itself is a version check (``check_torch``).
"""
import os
import re
import warnings
from typing import Callable, Optional, Tuple

import torch

from .version import TORCH_NEWEST as NEWEST_TORCH
from .version import TORCH_OLDEST as MIN_TORCH

# Lets ``import mmpoolformer`` go on under a torch newer than NEWEST_TORCH (untested).
UNTESTED_TORCH_VAR = 'MMPOOLFORMER_UNTESTED_TORCH'


def torch_version(version: Optional[str] = None) -> Tuple[int, int, int]:
    """(major, minor, patch) of a torch version string ('2.13.0+cpu', '2.15.0a0+git...')."""
    version = torch.__version__ if version is None else str(version)
    found = re.match(r'(\d+)\.(\d+)(?:\.(\d+))?', version)
    if found is None:
        raise ValueError(f'cannot read a version number from torch.__version__ {version!r}')
    return tuple(int(part or 0) for part in found.groups())


def _dotted(version) -> str:
    return '.'.join(str(part) for part in version)


def check_torch(version: Optional[str] = None) -> None:
    """Raise ImportError, with one line that names the versions needed, unless ``version``
    (default: the installed torch) is in the supported range."""
    version = torch.__version__ if version is None else version
    found = torch_version(version)[:2]
    needed = f'mmpoolformer needs torch >= {_dotted(MIN_TORCH)}, <= {_dotted(NEWEST_TORCH)}.x'
    if found < MIN_TORCH:
        raise ImportError(f'{needed}; this environment has torch {version}. Install a newer '
                          f'torch (with an mmcv built for it), e.g. `bash tools/setup_env.sh`.')
    if found > NEWEST_TORCH and os.environ.get(UNTESTED_TORCH_VAR, '') != '1':
        raise ImportError(f'{needed}; this environment has torch {version}, which is untested. '
                          f'Set {UNTESTED_TORCH_VAR}=1 to use it anyway.')


# ---------------------------------------------------------------------- custom operators
HAS_CUSTOM_OPS = hasattr(torch.library, 'custom_op')  # torch >= 2.4


class FunctionOp:
    """Where ``torch.library.custom_op`` is missing: the operator's Python function, with
    its registered backward run through a ``torch.autograd.Function``. The same code and
    the same numbers as the custom operator, eagerly; no fake implementation (torch.compile
    takes the reference ops where custom operators are missing, ``custom_ops_in_graph``)."""

    def __init__(self, name: str, fn: Callable):
        self.name, self._fn, self._function = name, fn, None
        # an autograd.Function tracks the tensors of a returned tuple, not of a list
        self._returns_list = str(fn.__annotations__.get('return', '')).startswith(
            'typing.List')

    def register_fake(self, fn: Callable) -> Callable:
        return fn

    def register_autograd(self, backward: Callable, *, setup_context: Callable) -> None:
        fn, returns_list = self._fn, self._returns_list

        def forward(*args):
            out = fn(*args)
            return tuple(out) if returns_list else out

        def backward_of_outputs(ctx, *grads):
            # custom_op hands the gradients of a List[Tensor] output over as one list
            return backward(ctx, list(grads)) if returns_list else backward(ctx, *grads)

        self._function = type(self.name.replace('::', '_'), (torch.autograd.Function, ), {
            'forward': staticmethod(forward), 'setup_context': staticmethod(setup_context),
            'backward': staticmethod(backward_of_outputs)})

    def __call__(self, *args):
        if self._function is None:
            return self._fn(*args)
        out = self._function.apply(*args)
        return list(out) if self._returns_list else out


def custom_op(name: str, *, mutates_args=(), device_types=None) -> Callable:
    """``torch.library.custom_op`` where torch has it, else a ``FunctionOp``."""
    def wrap(fn: Callable):
        if HAS_CUSTOM_OPS:
            return torch.library.custom_op(name, mutates_args=mutates_args,
                                           device_types=device_types)(fn)
        return FunctionOp(name, fn)
    return wrap


def sym_ite(condition, if_true, if_false):
    """``torch.sym_ite`` (symbolic sizes under torch.compile), plain ``if`` where missing."""
    if hasattr(torch, 'sym_ite'):
        return torch.sym_ite(condition, if_true, if_false)
    return if_true if condition else if_false


# ---------------------------------------------------------------------- graph capture
if hasattr(torch.compiler, 'is_compiling'):  # torch >= 2.3
    is_compiling = torch.compiler.is_compiling
else:
    def is_compiling() -> bool:
        """True while Dynamo traces (torch.compile, torch.export)."""
        return torch._dynamo.is_compiling()

if hasattr(torch.compiler, 'is_exporting'):  # torch >= 2.7
    is_exporting = torch.compiler.is_exporting
else:
    def is_exporting() -> bool:
        """True while torch.export traces; an older torch cannot tell it from compiling
        (``dynamo_export_unsupported``)."""
        return False


def captures_data_dependent_sizes() -> bool:
    """Whether an operator whose output sizes only its kernel knows may run now without a
    graph break: always in eager; under torch.compile where Dynamo keeps such operators in
    the graph (``capture_dynamic_output_shape_ops``, which the backbones' ``compile``
    switch sets and a plain ``torch.compile`` does not)."""
    return not is_compiling() or bool(torch._dynamo.config.capture_dynamic_output_shape_ops)


def custom_ops_in_graph() -> bool:
    """Whether the fast paths may stand in a graph that torch.compile captures now: custom
    operators exist, and the graph is not an export (which must see the reference ops)."""
    return HAS_CUSTOM_OPS and is_compiling() and not is_exporting()


# ---------------------------------------------------------------------- autocast
def _autocast_takes_device() -> bool:
    try:
        torch.is_autocast_enabled('cpu')
        return True
    except TypeError:
        return False


if _autocast_takes_device():  # torch >= 2.4
    autocast_enabled = torch.is_autocast_enabled
    autocast_dtype = torch.get_autocast_dtype
else:
    def autocast_enabled(device_type: str) -> bool:
        """Whether autocast is on for ``device_type`` ('cpu', 'cuda')."""
        if device_type == 'cpu':
            return torch.is_autocast_cpu_enabled()
        return device_type == 'cuda' and torch.is_autocast_enabled()

    def autocast_dtype(device_type: str) -> torch.dtype:
        """The dtype autocast computes in on ``device_type``."""
        if device_type == 'cpu':
            return torch.get_autocast_cpu_dtype()
        return torch.get_autocast_gpu_dtype()


def autocast_supports(device_type: str, dtype: torch.dtype) -> bool:
    """Whether autocast on ``device_type`` computes in ``dtype`` (float16 on the CPU needs
    torch >= 2.3; an older torch warns and turns autocast off)."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        return bool(torch.autocast(device_type, dtype=dtype)._enabled)


# ---------------------------------------------------------------------- checkpoints
# torch >= 2.4 lets its weights_only unpickler be extended with allowlisted types; an older
# torch's allowlist is fixed, so mmpoolformer unpickles with its own restricted unpickler.
SAFE_GLOBALS_IN_TORCH = hasattr(torch.serialization, 'add_safe_globals')


def torch_default_safe_globals() -> dict:
    """{'module.name': object} of what torch's own weights_only unpickler allows (tensors,
    storages, containers, dtypes), for the restricted unpickler of an older torch."""
    from torch import _weights_only_unpickler
    return dict(_weights_only_unpickler._get_allowed_globals())


# ---------------------------------------------------------------------- torch.compile
def _duck_shape_config():
    from torch.fx.experimental import _config
    return _config if hasattr(_config, 'use_duck_shape') else None


def compile_unsupported() -> Optional[str]:
    """Why the backbones' ``compile`` switch cannot run on this torch; None if it can."""
    if not HAS_CUSTOM_OPS:
        what = 'custom operators (torch.library.custom_op)'
    else:
        try:
            missing = _duck_shape_config() is None
        except ImportError:
            missing = True
        if not missing:
            return None
        what = 'Dynamo\'s use_duck_shape switch'
    return (f'compile=True needs torch >= 2.5 ({what}); this is torch {torch.__version__}. '
            f'Use compile=False (the eager fast paths), or a newer torch.')


def symbolic_shapes_config(recompile_limit: int) -> list:
    """Context managers that make Dynamo trace with symbolic parameter shapes, no duck
    sizing, operators with data-dependent output sizes kept in the graph, and
    ``recompile_limit`` graphs per function (see ``models/compile.py``)."""
    dynamo = torch._dynamo.config
    limit = 'recompile_limit' if hasattr(dynamo, 'recompile_limit') else 'cache_size_limit'
    return [dynamo.patch(force_parameter_static_shapes=False,
                         force_nn_module_property_static_shapes=False,
                         capture_dynamic_output_shape_ops=True, **{limit: recompile_limit}),
            _duck_shape_config().patch(use_duck_shape=False)]


def raise_recompile_limit(at_least: int) -> None:
    """Let Dynamo keep at least ``at_least`` graphs per compiled function."""
    dynamo = torch._dynamo.config
    limit = 'recompile_limit' if hasattr(dynamo, 'recompile_limit') else 'cache_size_limit'
    setattr(dynamo, limit, max(getattr(dynamo, limit), at_least))


# ---------------------------------------------------------------------- ONNX
def dynamo_export_unsupported() -> Optional[str]:
    """Why ``torch.onnx.export(dynamo=True)`` cannot export a backbone here; None if it
    can (it needs torch.compiler.is_exporting, so that export sees the reference ops)."""
    if hasattr(torch.compiler, 'is_exporting') and hasattr(torch.export, 'Dim') \
            and hasattr(torch.export.Dim, 'AUTO'):
        return None
    return (f'the dynamo ONNX exporter needs torch >= 2.7; this is torch {torch.__version__}. '
            f'Use the default (TorchScript) exporter.')


def onnx_export(model, args, path, *, dynamo: bool = False, **kwargs) -> None:
    """``torch.onnx.export`` with the exporter chosen explicitly (torch >= 2.9 defaults to
    dynamo=True; torch < 2.5 has only the TorchScript exporter and no ``dynamo`` argument)."""
    if dynamo:
        reason = dynamo_export_unsupported()
        if reason:
            raise RuntimeError(reason)
        torch.onnx.export(model, args, path, dynamo=True, **kwargs)
        return
    elif 'dynamo' in torch.onnx.export.__code__.co_varnames:
        torch.onnx.export(model, args, path, dynamo=False, **kwargs)
    else:
        torch.onnx.export(model, args, path, **kwargs)
