from .checkpoint import install_safe_globals
from .version import __version__

# Make mmengine's own checkpoints (resume, load_from, tools/test.py) loadable with torch's
# weights_only unpickler; see mmpoolformer/checkpoint/safe_load.py.
install_safe_globals()

from . import engine, evaluation, models  # noqa: E402,F401  (registers backbones, wrappers, metrics)

# Checkpoints (and every other local file mmengine writes) are replaced atomically.
engine.install_atomic_local_backend()

__all__ = ['__version__']
