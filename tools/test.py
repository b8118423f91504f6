"""Evaluate a checkpoint of a detector (mmdet) or segmentor (mmseg) config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--show-dir DIR] [--show]
                         [--cfg-options k=v ...] [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmpoolformer.apis import (  # noqa: E402
    DatasetNotFoundError,
    ModelConfigError,
    add_common_args,
    build_runner,
    check_datasets,
    load_config,
    setup_cpu_distributed,
)


def parse_args(argv=None):
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--show', action='store_true', help='show predictions in a window')
    parser.add_argument('--show-dir', help='save pictures of every prediction in this '
                        'directory, relative to the work dir (for detection, as in mmdet, '
                        'to its timestamped run folder)')
    parser.add_argument('--wait-time', type=float, default=2, help='seconds per --show image')
    return parser.parse_args(argv)


def trigger_visualization(cfg, args):
    hook = cfg.default_hooks.get('visualization')
    if hook is None:
        sys.exit('ERROR: --show/--show-dir need default_hooks.visualization in the config')
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if hook.get('type', '').startswith('Det'):
            hook['test_out_dir'] = args.show_dir  # mmdet: under the run's work dir folder
        else:
            # mmseg's hook saves through the visualizer, relative to the current directory,
            # and only every `interval`-th batch (default 50): draw them all, in the work dir.
            hook['interval'] = 1
            cfg.visualizer['save_dir'] = osp.join(cfg.work_dir, args.show_dir)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    from mmpoolformer.checkpoint import CheckpointError, load_checkpoint_file
    try:  # refuse unreadable or unsafe files with a clear message before building anything
        load_checkpoint_file(args.checkpoint)
    except (FileNotFoundError, CheckpointError) as e:
        sys.exit(f'ERROR: {e}')
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        trigger_visualization(cfg, args)
    try:
        check_datasets(cfg, ('test', ))
    except DatasetNotFoundError as e:
        sys.exit(f'ERROR: {e}')
    setup_cpu_distributed(cfg)
    try:
        runner = build_runner(cfg)
    except ModelConfigError as e:
        sys.exit(f'ERROR: {e}')
    return runner.test()


if __name__ == '__main__':
    main()
