"""Train a detector (mmdet) or segmentor (mmseg) config with mmengine's Runner.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
                          [--stop-signals SIG ...] [--cfg-options k=v ...]
                          [--launcher {none,pytorch,slurm,mpi}]

A stop signal (SIGTERM, SIGUSR1, SIGINT by default) saves a checkpoint after the current
iteration and exits with status 75; ``--resume`` continues from it (docs/reliability.md).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmengine.logging import print_log  # noqa: E402

from mmpoolformer.apis import (  # noqa: E402
    add_common_args,
    build_runner,
    check_datasets,
    checkpoint_to_resume,
    exit_on_user_error,
    load_config,
    setup_cpu_distributed,
)
from mmpoolformer.checkpoint.safe_load import check_checkpoint_file  # noqa: E402
from mmpoolformer.engine.preemption import (  # noqa: E402
    DEFAULT_SIGNALS,
    EXIT_PREEMPTED,
    enable_preemption,
    parse_signals,
)


def parse_args(argv=None):
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: fp16 + loss scaling on CUDA, bf16 autocast on CPU')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by (total batch / auto_scale_lr.base_batch_size)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto',
                        help='resume from CKPT, or without a value from the latest '
                             'checkpoint in the work dir')
    parser.add_argument('--load-from', help='start from the weights of CKPT (no resume)')
    parser.add_argument('--stop-signals', nargs='+', default=list(DEFAULT_SIGNALS),
                        metavar='SIG',
                        help=f'signals that save a checkpoint after the current iteration '
                             f'and exit with {EXIT_PREEMPTED} (default: '
                             f'{" ".join(DEFAULT_SIGNALS)}); "none": they keep their default '
                             f'action')
    args = parser.parse_args(argv)
    try:
        parse_signals(args.stop_signals)
    except ValueError as e:
        parser.error(f'--stop-signals: {e}')
    return args


def enable_amp(cfg, requested: bool):
    """--amp: fp16 with dynamic loss scaling on CUDA (as mmdet), bf16 autocast on CPU.

    A config whose wrapper is mmengine's AmpOptimWrapper (which needs an accelerator) gets
    the CPU's bf16 autocast on a machine without CUDA, with or without --amp.
    """
    import torch
    wrapper = cfg.optim_wrapper
    if wrapper.get('type') == 'AmpOptimWrapper' and not torch.cuda.is_available():
        wrapper.pop('loss_scale', None)  # bf16 needs no loss scaling
        wrapper.type = 'mmpoolformer.AmpCPUOptimWrapper'
        print_log('AmpOptimWrapper needs CUDA: mixed precision runs as bf16 autocast on the '
                  'CPU (mmpoolformer.AmpCPUOptimWrapper)', logger='current')
        return
    if not requested or wrapper.get('type') in ('AmpOptimWrapper',
                                                'mmpoolformer.AmpCPUOptimWrapper'):
        return
    if torch.cuda.is_available():
        wrapper.type = 'AmpOptimWrapper'
        wrapper.loss_scale = 'dynamic'
    else:
        wrapper.type = 'mmpoolformer.AmpCPUOptimWrapper'


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    enable_amp(cfg, args.amp)
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            sys.exit('ERROR: --auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    if args.load_from is not None:
        cfg.resume, cfg.load_from = False, args.load_from
    # Resume must continue torch's random stream too (mmengine does not checkpoint it).
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(h.get('type') in ('RNGStateHook', 'mmpoolformer.RNGStateHook') for h in hooks):
        cfg.custom_hooks = hooks + [dict(type='mmpoolformer.RNGStateHook')]
    enable_preemption(cfg, args.stop_signals)
    # Bad input (data, checkpoint, model config) ends in one line naming it, before
    # anything is built where it can be checked cheaply, else when the Runner meets it.
    with exit_on_user_error(cfg):
        check_datasets(cfg, ('train', 'val'))
        checkpoint = cfg.get('load_from')
        if cfg.get('resume') and not checkpoint:
            checkpoint = checkpoint_to_resume(cfg.work_dir)
        if checkpoint:
            check_checkpoint_file(checkpoint)
        setup_cpu_distributed(cfg)
        return build_runner(cfg).train()


if __name__ == '__main__':
    main()
