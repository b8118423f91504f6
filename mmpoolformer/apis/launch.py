"""What tools/train.py and tools/test.py share: config loading and environment fixes.

Both tools serve detection (mmdet) and segmentation (mmseg) configs alike; the config's
``default_scope`` decides which registries the Runner uses.
"""
import os
import os.path as osp
from datetime import timedelta

import torch
from mmengine.config import Config, DictAction

from .data_check import check_datasets
from .model_check import check_neck_channels

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
    from mmengine.registry import RUNNERS
    from mmengine.runner import Runner
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    check_neck_channels(runner.model)
    return runner


__all__ = ['add_common_args', 'load_config', 'setup_cpu_distributed', 'build_runner',
           'check_datasets']
