from .data_check import DatasetNotFoundError, check_datasets
from .launch import add_common_args, build_runner, load_config, setup_cpu_distributed
from .model_check import ModelConfigError, check_neck_channels

__all__ = [
    'DatasetNotFoundError', 'ModelConfigError', 'check_neck_channels', 'check_datasets',
    'add_common_args', 'build_runner', 'load_config', 'setup_cpu_distributed'
]
