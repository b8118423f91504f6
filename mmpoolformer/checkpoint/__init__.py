from .layouts import convert_state_dict, detect_layout
from .loading import extract_state_dict, load_converted, load_pretrained
from .safe_load import CheckpointError, install_safe_globals, load_checkpoint_file, safe_globals

__all__ = [
    'convert_state_dict', 'detect_layout', 'extract_state_dict', 'load_converted',
    'load_pretrained', 'CheckpointError', 'install_safe_globals', 'load_checkpoint_file',
    'safe_globals'
]
