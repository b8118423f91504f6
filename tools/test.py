"""Evaluate a checkpoint of a detector (mmdet) or segmentor (mmseg) config.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out FILE.pkl | --out DIR]
                         [--show-dir DIR] [--show] [--cfg-options k=v ...]
                         [--launcher {none,pytorch,slurm,mpi}]
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout

from mmpoolformer.apis import (  # noqa: E402
    add_common_args,
    build_runner,
    check_datasets,
    exit_on_user_error,
    load_config,
    setup_cpu_distributed,
)
from mmpoolformer.checkpoint.safe_load import check_checkpoint_file  # noqa: E402


def parse_args(argv=None):
    parser = add_common_args(argparse.ArgumentParser(description=__doc__.splitlines()[0]))
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out', help='save the predictions, as mmdet\'s and mmseg\'s '
                        'tools/test.py do: detection, a .pkl file (one dict per image); '
                        'segmentation, a directory (one PNG class map per image)')
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


def add_prediction_dump(cfg, out):
    """Make the test evaluator save the predictions to ``out``, as ``--out`` does in mmdet's
    and mmseg's own tools/test.py: mmdet adds a ``DumpDetResults`` metric (a pickle), mmseg
    gives its metrics an ``output_dir`` (one PNG per image). The metrics keep running.
    """
    scope = cfg.get('default_scope')
    evaluator = cfg.test_evaluator
    # test_evaluator is a metric, a list of metrics or an Evaluator dict with 'metrics'.
    holder = evaluator if isinstance(evaluator, dict) and 'metrics' in evaluator else None
    metrics = holder['metrics'] if holder is not None else evaluator
    metrics = list(metrics) if isinstance(metrics, (list, tuple)) else [metrics]
    if scope == 'mmdet':
        if not out.endswith(('.pkl', '.pickle')):
            sys.exit(f'ERROR: --out {out}: detection predictions are saved as a pickle; '
                     'name a .pkl or .pickle file')
        metrics.append(dict(type='DumpDetResults', out_file_path=out))
    elif scope == 'mmseg':
        if out.endswith(('.pkl', '.pickle')) or osp.isfile(out):
            sys.exit(f'ERROR: --out {out}: segmentation predictions are saved as one PNG '
                     'per image; name a directory')
        for metric in metrics:
            metric.update(output_dir=out, keep_results=True)
    else:
        sys.exit(f'ERROR: --out needs a detection (default_scope mmdet) or segmentation '
                 f'(mmseg) config; this one has default_scope {scope!r}')
    if holder is not None:
        holder['metrics'] = metrics
    else:
        cfg.test_evaluator = metrics if len(metrics) > 1 else metrics[0]


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args)
    cfg.load_from = args.checkpoint
    if args.show or args.show_dir:
        trigger_visualization(cfg, args)
    if args.out:
        add_prediction_dump(cfg, args.out)
    # Bad input (data, checkpoint, model config) ends in one line naming it, before
    # anything is built where it can be checked cheaply, else when the Runner meets it.
    with exit_on_user_error(cfg):
        check_checkpoint_file(args.checkpoint)
        check_datasets(cfg, ('test', ))
        setup_cpu_distributed(cfg)
        return build_runner(cfg).test()


if __name__ == '__main__':
    main()
