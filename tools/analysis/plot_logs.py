"""Plot loss, learning rate and the validation metric of a training run into one PNG.

    python tools/analysis/plot_logs.py WORK_DIR [--out PLOT.png] [--metric coco/bbox_mAP]
        [--title TEXT]

Reads the scalars that mmengine's LocalVisBackend writes, ``WORK_DIR/<timestamp>/vis_data/
scalars.json`` (WORK_DIR may also be one run's folder or a json file). A resumed run
writes a new timestamped folder; they are joined in time order, later values of an
iteration replacing earlier ones (a run that starts from scratch again replaces all).
The metric defaults to the first of coco/bbox_mAP, coco/segm_mAP, mIoU, aAcc that the run
logged. Evaluations are plotted at the iteration where they ran: mmengine logs them with
the epoch as their step (0 for iteration-based loops), so the last training iteration
logged before them is used. TensorBoard reads the same scalars when the config turns on
mmengine's TensorboardVisBackend (see docs/tools.md).
"""
import argparse
import glob
import json
import os.path as osp
import sys

METRICS = ('coco/bbox_mAP', 'coco/segm_mAP', 'mIoU', 'aAcc')
NOT_METRICS = {'step', 'iter', 'epoch', 'time', 'data_time', 'memory', 'lr'}


def scalar_files(path: str) -> list:
    """The json scalar files of a work dir (every run, oldest first), a run or a file."""
    if osp.isfile(path):
        return [path]
    for pattern in ('*/vis_data/scalars.json', 'vis_data/scalars.json'):
        found = sorted(glob.glob(osp.join(path, pattern)))
        if found:
            return found
    raise FileNotFoundError(f'no <timestamp>/vis_data/scalars.json under {path}: is it the '
                            f'--work-dir of a tools/train.py run?')


def read_run(path: str):
    """(train records, val records) of one scalars.json; val records get an ``iter``."""
    train, val, last_iter = [], [], 0
    with open(path) as f:
        for line in f:
            if not line.strip():
                continue
            record = json.loads(line)
            if 'loss' in record or 'lr' in record:
                last_iter = record['step']
                train.append(dict(record, iter=record['step']))
            else:
                val.append(dict(record, iter=max(record.get('step', 0), last_iter)))
    return train, val


def load_runs(path: str):
    """Training and validation records of all runs, by iteration, later runs winning."""
    train, val = {}, {}
    for file in scalar_files(path):
        run_train, run_val = read_run(file)
        if not run_train:
            continue  # a tools/test.py run: no training to plot against
        if train and run_train[0]['iter'] <= min(train):
            train, val = {}, {}  # a fresh start in the same work dir, not a resume
        train.update((r['iter'], r) for r in run_train)
        val.update((r['iter'], r) for r in run_val)
    if not train:
        raise ValueError(f'no training iterations logged under {path}')
    return [train[i] for i in sorted(train)], [val[i] for i in sorted(val)]


def pick_metric(val: list, wanted=None):
    if wanted:
        if not any(wanted in r for r in val):
            logged = sorted({k for r in val for k in r} - NOT_METRICS)
            raise ValueError(f'metric {wanted!r} was not logged; logged: '
                             f'{", ".join(logged) or "nothing"}')
        return wanted
    return next((m for m in METRICS if any(m in r for r in val)), None)


def plot(train: list, val: list, metric, out: str, title: str = None):
    import matplotlib
    matplotlib.use('Agg')  # files only, no display needed
    import matplotlib.pyplot as plt

    panels = 3 if metric else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.2), dpi=90)
    iters = [r['iter'] for r in train]
    ax = axes[0]
    parts = sorted({k for r in train for k in r if k.startswith('loss_')})
    for key in parts:
        ax.plot(iters, [r.get(key) for r in train], lw=1, alpha=0.7, label=key)
    ax.plot(iters, [r['loss'] for r in train], color='black', lw=1.6, label='loss')
    ax.set_title('training loss')
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(iters, [r['lr'] for r in train], color='tab:green')
    ax.set_title('learning rate')
    ax.ticklabel_format(axis='y', style='sci', scilimits=(-2, 2))
    if metric:
        points = [(r['iter'], r[metric]) for r in val if metric in r]
        ax = axes[2]
        ax.plot([p[0] for p in points], [p[1] for p in points], 'o-', color='tab:red')
        for x, y in points[-1:]:
            ax.annotate(f'{y:.3g}', (x, y), textcoords='offset points', xytext=(-6, 6),
                        ha='right', fontsize=8)
        ax.set_title(f'validation {metric}')
        ax.set_xlim(0, max(iters) * 1.05)
        values = [p[1] for p in points]
        if values and min(values) >= 0:
            ax.set_ylim(0, max(values) * 1.2 or 1)
    for ax in axes:
        ax.set_xlabel('iteration')
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir', help='tools/train.py --work-dir, a run, or a json file')
    parser.add_argument('--out', help='PNG to write (default WORK_DIR/loss_plot.png)')
    parser.add_argument('--metric', help='validation metric (default: the first of '
                                         + ', '.join(METRICS) + ' found)')
    parser.add_argument('--title', help='figure title')
    args = parser.parse_args(argv)
    try:
        train, val = load_runs(args.work_dir)
        metric = pick_metric(val, args.metric)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'ERROR: {e}')
    out = args.out or osp.join(args.work_dir if osp.isdir(args.work_dir)
                               else osp.dirname(args.work_dir), 'loss_plot.png')
    plot(train, val, metric, out, args.title)
    last = f', {metric} {val[-1][metric]:.4g} at iteration {val[-1]["iter"]}' \
        if metric and val and metric in val[-1] else ''
    print(f'{len(train)} logged iterations up to {train[-1]["iter"]}{last}: saved {out}')
    return out


if __name__ == '__main__':
    main()
