from .data_check import (
    DataCheckHook,
    DataError,
    DatasetNotFoundError,
    check_dataset_files,
    check_datasets,
    image_file_problem,
)
from .launch import (
    USER_ERRORS,
    add_common_args,
    build_runner,
    checkpoint_to_resume,
    exit_on_user_error,
    load_config,
    setup_cpu_distributed,
)
from .model_check import ModelConfigError, check_component_args, check_neck_channels

__all__ = [
    'DataCheckHook', 'DataError', 'DatasetNotFoundError', 'ModelConfigError', 'USER_ERRORS',
    'add_common_args', 'build_runner', 'check_component_args', 'check_dataset_files',
    'check_datasets', 'check_neck_channels', 'checkpoint_to_resume', 'exit_on_user_error',
    'image_file_problem', 'load_config', 'setup_cpu_distributed'
]
