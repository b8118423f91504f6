from .layouts import convert_state_dict, detect_layout
from .loading import extract_state_dict, load_converted, load_pretrained
from .safe_load import (
    CheckpointError,
    CheckpointNotFoundError,
    UnsafeCheckpointError,
    add_safe_globals,
    cache_path,
    get_safe_globals,
    install_mmengine_loaders,
    install_safe_globals,
    load_checkpoint_file,
    replaces_mmengine_loaders,
    safe_globals,
)

__all__ = [
    'convert_state_dict', 'detect_layout', 'extract_state_dict', 'load_converted',
    'load_pretrained', 'CheckpointError', 'CheckpointNotFoundError', 'UnsafeCheckpointError',
    'add_safe_globals', 'cache_path', 'get_safe_globals', 'install_mmengine_loaders',
    'install_safe_globals', 'load_checkpoint_file', 'replaces_mmengine_loaders', 'safe_globals'
]
