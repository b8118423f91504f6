"""Regional torch.compile of the backbones: one compiled block serves every block.

``MetaFormer(compile=True)`` (or a dict of ``torch.compile`` options) compiles the blocks,
not the backbone: each call goes through one compiled function of (block, x), shared by
every block and every backbone of the process that use the same options. Its shapes are
symbolic, the channels included, so one graph serves every stage of a family whose blocks
have the same structure (PoolFormer: one block type; CAFormer: a convolution and an
attention block), and a new input size needs no new graph. Compile time therefore stays
that of one or two blocks, however deep the arch. The stem, the downsamplings and the output
norms run eagerly (single convolutions and norms, which compiling would not speed up).

What the compiled blocks compute on each device is the kernels layer's choice
(``kernels.COMPILED_FAST_PATHS``): on the CPU the fast paths as custom operators, on CUDA
the reference ops, which Inductor fuses. Inference without autograd on the CPU runs the
same fast paths eagerly (``kernels.COMPILED_INFERENCE``): compiling them only adds
per-call overhead.
"""
import functools
from typing import Callable, Optional, Union

import torch

from .. import compat
from . import kernels

# What ``compile=True`` means: symbolic sizes from the first call (detection batches change
# size at every iteration).
DEFAULT_OPTIONS = dict(dynamic=True)
VALID_OPTIONS = ('fullgraph', 'dynamic', 'backend', 'mode', 'options', 'disable')

_compiled = {}


def compile_options(value: Union[bool, dict, None]) -> Optional[dict]:
    """The torch.compile options of a backbone's ``compile`` argument; None: eager.

    Raises RuntimeError (one line) on a torch that the switch does not support
    (``compat.compile_unsupported``), when the backbone is built.
    """
    if value is None or value is False:
        return None
    if value is True:
        options = dict(DEFAULT_OPTIONS)
    elif isinstance(value, dict):
        unknown = sorted(set(value) - set(VALID_OPTIONS))
        if unknown:
            raise ValueError(f'compile={value!r}: unknown torch.compile option(s) {unknown}; '
                             f'valid: {", ".join(VALID_OPTIONS)}')
        options = {**DEFAULT_OPTIONS, **value}
    else:
        raise TypeError(f'compile must be False, True or a dict of torch.compile options '
                        f'({", ".join(VALID_OPTIONS)}), got {value!r}')
    reason = compat.compile_unsupported()
    if reason:
        raise RuntimeError(reason)
    return options


def _call_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return block(x)


def _compiled_call(options: dict) -> Callable:
    key = repr(sorted(options.items()))
    if key not in _compiled:
        _compiled[key] = torch.compile(_call_block, **options)
    return _compiled[key]


# Graphs one compiled function may hold. It serves every block type, in train and eval
# mode, with frozen and trainable parameters, for inputs that are views or not (the first
# block of a stage gets the downsampling's output, a view) and for every backbone of the
# process: more than Dynamo's default of 8.
RECOMPILE_LIMIT = 64


def _symbolic_shapes():
    """Dynamo's settings for the compiled blocks, while they are traced.

    - Parameter shapes symbolic too (Dynamo makes them static by default): the channel count
      is then a symbol, and the blocks of every stage share one graph.
    - No "duck sizing": Dynamo gives equal sizes one symbol, so a square input would get a
      graph for H == W only, and the first non-square input a second graph.
    - Operators whose output sizes only the kernel knows stay in the graph (the fused MLP's
      row chunks: ``kernels.cpu.chunk_bounds``).
    """
    return compat.symbolic_shapes_config(RECOMPILE_LIMIT)


def call_compiled(options: dict, block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``block(x)`` through the compiled function of ``options``."""
    if compat.is_compiling():  # inside a caller's own compiled region: inline
        return block(x)
    if not torch.is_grad_enabled() and not kernels.compiles_inference(x):
        return block(x)  # the device's eager fast paths (kernels.COMPILED_INFERENCE)
    first, second = _symbolic_shapes()
    with first, second:
        return _compiled_call(options)(block, x)


def compiled_runner(options: Optional[dict], block: torch.nn.Module) -> Callable:
    """A callable of x: ``block`` itself, or through the compiled function of ``options``."""
    return block if options is None else functools.partial(call_compiled, options, block)
