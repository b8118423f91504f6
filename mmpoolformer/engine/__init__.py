from .atomic_io import AtomicLocalBackend, install_atomic_local_backend
from .mmcv_compat import install_mmcv_compat
from .model_check_hook import NeckChannelsCheckHook
from .optim_wrapper import AmpCPUOptimWrapper
from .rng_hook import RNGStateHook

__all__ = [
    'AtomicLocalBackend', 'install_atomic_local_backend', 'AmpCPUOptimWrapper',
    'install_mmcv_compat', 'NeckChannelsCheckHook', 'RNGStateHook'
]

