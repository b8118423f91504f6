"""What tools/train.py and tools/test.py share: config loading and environment fixes.

Both tools serve detection (mmdet) and segmentation (mmseg) configs alike; the config's
``default_scope`` decides which registries the Runner uses.
"""
import glob
import json
import os
import os.path as osp
import sys
from contextlib import contextmanager
from datetime import timedelta

import torch
from mmengine.config import Config, DictAction

from ..checkpoint.safe_load import CheckpointError
from ..models.backbones.metaformer import InputTooLargeError
from .data_check import (
    DataCheckHook,
    DataError,
    DatasetNotFoundError,
    check_datasets,
    find_malformed_annotation,
)
from .memory_check import check_input_memory
from .model_check import ModelConfigError, check_component_args, check_neck_channels

# A rank that dies leaves the others blocked in a collective. gloo gives up after the
# process-group timeout; 30 minutes (mmengine's default) is long for a CPU job. Override
# with env_cfg.dist_cfg.timeout in the config or MMPOOLFORMER_DIST_TIMEOUT (seconds).
CPU_DIST_TIMEOUT_S = 300


def add_common_args(parser):
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction,
        help='override config settings, e.g. train_dataloader.batch_size=4')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher')
    # torchrun sets LOCAL_RANK; older launchers pass --local_rank.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    return parser


def load_config(args) -> Config:
    import mmpoolformer  # noqa: F401  registers models, allowlists checkpoint types

    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg


def setup_cpu_distributed(cfg: Config) -> None:
    """Make ``--launcher pytorch|slurm|mpi`` work on machines without CUDA.

    mmengine 0.10.7's ``init_dist`` calls ``torch.cuda.set_device`` unconditionally and its
    DDP wrapper pins ``device_ids=[LOCAL_RANK]``; both fail on the CPU. Here the process
    group is created with gloo before the Runner starts (the Runner then skips its own
    init), DDP gets ``device_ids=None``, which is what CPU modules need, and SyncBN layers
    (CUDA only) are built as BN.
    """
    if cfg.launcher == 'none' or torch.cuda.is_available():
        return
    import torch.distributed as dist
    if cfg.launcher == 'slurm':
        _slurm_env()
    elif cfg.launcher == 'mpi':
        os.environ.setdefault('RANK', os.environ.get('OMPI_COMM_WORLD_RANK', '0'))
        os.environ.setdefault('WORLD_SIZE', os.environ.get('OMPI_COMM_WORLD_SIZE', '1'))
        os.environ.setdefault('MASTER_ADDR', '127.0.0.1')
        os.environ.setdefault('MASTER_PORT', '29500')
    dist_cfg = cfg.get('env_cfg', {}).get('dist_cfg', {})
    timeout = float(os.environ.get('MMPOOLFORMER_DIST_TIMEOUT',
                                   dist_cfg.get('timeout', CPU_DIST_TIMEOUT_S)))
    cfg.env_cfg.dist_cfg = dict(backend='gloo', timeout=timeout)
    if not dist.is_initialized():
        dist.init_process_group(backend='gloo', timeout=timedelta(seconds=timeout))
    _sync_bn_to_bn(cfg.model)
    wrapper = dict(cfg.get('model_wrapper_cfg') or {})
    wrapper.setdefault('type', 'MMDistributedDataParallel')
    wrapper.update(device_ids=None, broadcast_buffers=False)
    wrapper.setdefault('find_unused_parameters', cfg.get('find_unused_parameters', False))
    cfg.model_wrapper_cfg = wrapper


def _sync_bn_to_bn(node):
    """SyncBN needs CUDA; mmengine reverts it to BN only for non-distributed runs."""
    if isinstance(node, dict):
        if node.get('type') == 'SyncBN':
            node['type'] = 'BN'
        for value in node.values():
            _sync_bn_to_bn(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            _sync_bn_to_bn(value)


def _slurm_env():
    proc_id = int(os.environ['SLURM_PROCID'])
    ntasks = int(os.environ['SLURM_NTASKS'])
    node_list = os.environ['SLURM_NODELIST']
    import subprocess
    addr = subprocess.getoutput(f'scontrol show hostname {node_list} | head -n1')
    os.environ.setdefault('MASTER_PORT', '29500')
    os.environ.setdefault('MASTER_ADDR', addr)
    os.environ['WORLD_SIZE'] = str(ntasks)
    os.environ['LOCAL_RANK'] = str(proc_id % max(int(os.environ.get('SLURM_NTASKS_PER_NODE',
                                                                    ntasks)), 1))
    os.environ['RANK'] = str(proc_id)


def build_runner(cfg: Config):
    """Build the Runner, with the checks of model_check and data_check on top."""
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    check_component_args(cfg.model, cfg.get('default_scope'))
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    check_neck_channels(runner.model)
    check_input_memory(cfg, runner.model)
    runner.register_hook(DataCheckHook())
    return runner


def checkpoint_to_resume(work_dir: str):
    """The checkpoint that ``--resume`` without a path continues from: the one named in
    ``work_dir/last_checkpoint`` (as mmengine reads it), or None to start afresh.

    mmengine 0.10.7 writes last_checkpoint in place, not atomically: a run killed at that
    moment leaves it empty, which mmengine would take for the path ''.
    """
    from mmengine.runner import find_latest_checkpoint
    path = find_latest_checkpoint(work_dir)
    if path is not None and not path.strip():
        saved = sorted(glob.glob(osp.join(work_dir, '*.pth')), key=osp.getmtime)
        hint = f', e.g. --resume {saved[-1]} (the newest)' if saved else ''
        raise CheckpointError(f'{osp.join(work_dir, "last_checkpoint")} is empty (the run '
                              f'was killed while writing it?): name the checkpoint to '
                              f'resume from{hint}')
    return path


# Errors whose message says all a user needs: printed as one line, without a traceback.
USER_ERRORS = (CheckpointError, DataError, DatasetNotFoundError, ModelConfigError,
               InputTooLargeError)


@contextmanager
def exit_on_user_error(cfg: Config):
    """Turn a USER_ERRORS exception into ``ERROR: <message>`` on stderr and exit status 1.

    A JSON error while the datasets are built comes from the COCO API or mmengine, which
    give the position but not the file: the annotation files of ``cfg`` are parsed again
    (only then) to name it. Every other exception keeps its traceback.
    """
    try:
        yield
    except USER_ERRORS as e:
        sys.exit(f'ERROR: {e}')
    except (json.JSONDecodeError, UnicodeDecodeError):
        malformed = find_malformed_annotation(cfg)
        if malformed is None:
            raise
        sys.exit(f'ERROR: {malformed}')


__all__ = ['add_common_args', 'load_config', 'setup_cpu_distributed', 'build_runner',
           'check_datasets', 'checkpoint_to_resume', 'exit_on_user_error', 'USER_ERRORS']
