from .atomic_io import AtomicLocalBackend, install_atomic_local_backend
from .loops import EpochBasedTrainLoop
from .lr_decay import MetaFormerDecayOptimizerConstructor
from .mmcv_compat import install_mmcv_compat
from .model_check_hook import NeckChannelsCheckHook
from .optim_wrapper import AmpCPUOptimWrapper
from .preemption import (
    DEFAULT_SIGNALS,
    EXIT_PREEMPTED,
    Preempted,
    PreemptionHook,
    enable_preemption,
    parse_signals,
)
from .rng_hook import RNGStateHook

__all__ = [
    'AtomicLocalBackend', 'install_atomic_local_backend', 'AmpCPUOptimWrapper',
    'install_mmcv_compat', 'NeckChannelsCheckHook', 'RNGStateHook', 'EpochBasedTrainLoop',
    'DEFAULT_SIGNALS', 'EXIT_PREEMPTED', 'Preempted', 'PreemptionHook', 'enable_preemption',
    'parse_signals', 'MetaFormerDecayOptimizerConstructor'
]

