from .atomic_io import AtomicLocalBackend, install_atomic_local_backend
from .optim_wrapper import AmpCPUOptimWrapper

__all__ = ['AtomicLocalBackend', 'install_atomic_local_backend', 'AmpCPUOptimWrapper']
