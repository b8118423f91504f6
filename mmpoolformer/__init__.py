"""Importing mmpoolformer (what a config's ``custom_imports`` does) changes four things for
the whole process; the README's "What importing mmpoolformer changes" says how to opt out."""
from . import compat

# One line naming the torch versions needed, before anything fails deeper down.
compat.check_torch()

from .checkpoint import (  # noqa: E402
    install_mmengine_loaders,
    install_safe_globals,
    replaces_mmengine_loaders,
)
from .version import __version__  # noqa: E402

# 1. torch's weights_only unpickler accepts the few non-tensor types of mmengine's own
#    checkpoints (HistoryBuffer, numpy arrays and scalars); see checkpoint/safe_load.py.
install_safe_globals()
# 2. mmengine loads local and http(s) checkpoints through mmpoolformer's loader:
#    weights_only always, one-line errors, downloads checked before they are cached.
#    MMPOOLFORMER_SAFE_LOAD=0 leaves mmengine's own loaders in place.
if replaces_mmengine_loaders():
    install_mmengine_loaders()

from . import engine, evaluation, models  # noqa: E402,F401  (registers backbones, wrappers, metrics)

# 3. Checkpoints (and every other local file mmengine writes) are replaced atomically.
engine.install_atomic_local_backend()

# 4. mmcv's RoIAlign reads a contiguous copy of channels-last features (its kernel ignores
#    strides), and its CPU NMS and RoIAlign accept bf16/fp16 tensors (they run in fp32),
#    as autocast (--amp) hands them in two-stage detectors. See engine/mmcv_compat.py.
engine.install_mmcv_compat()

__all__ = ['__version__']
