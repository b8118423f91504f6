"""Summarise a training run from mmengine's json scalars: time, s/iter and final metrics.

    python tools/analysis/quickstart_report.py WORK_DIR [--metric coco/bbox_mAP]
"""
import argparse
import glob
import json
import os.path as osp
import sys

DRAWN = 'drawn/'  # the prefix of mmpoolformer.DetectionErrorMetric's counts


def load_scalars(work_dir):
    """All records of the newest run's vis_data/scalars.json under WORK_DIR."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    if not files:
        raise FileNotFoundError(f'no */vis_data/scalars.json under {work_dir}')
    with open(files[-1]) as f:
        return [json.loads(line) for line in f if line.strip()]


def summarise(records, metric):
    train = [r for r in records if 'loss' in r and 'time' in r]
    evals = [r for r in records if metric in r]
    if not train:
        raise ValueError('no training iterations logged')
    # Each logged 'time' is the mean over its logging window; weight by window length.
    total, prev = 0.0, 0
    for r in train:
        total += r['time'] * (r['iter'] - prev)
        prev = r['iter']
    drawn = {k[len(DRAWN):]: v for k, v in (evals[-1] if evals else {}).items()
             if k.startswith(DRAWN)}
    return dict(iters=train[-1]['iter'], train_minutes=total / 60,
                sec_per_iter=total / train[-1]['iter'],
                final_metric=evals[-1][metric] if evals else None, metric=metric,
                drawn=drawn)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('work_dir')
    parser.add_argument('--metric', default='coco/bbox_mAP')
    args = parser.parse_args(argv)
    try:
        s = summarise(load_scalars(args.work_dir), args.metric)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'ERROR: {e}')
    metric = 'n/a' if s['final_metric'] is None else f"{s['final_metric']:.3f}"
    print(f"{s['iters']} iterations, {s['train_minutes']:.1f} min of training, "
          f"{s['sec_per_iter']:.2f} s/iter, {s['metric']} = {metric}")
    d = s['drawn']
    if d:
        print(f"boxes drawn at score >= {d['score_thr']:g} on the validation images: "
              f"{d['correct']} correct; errors: {d['wrong_class']} wrong class, "
              f"{d['duplicate']} duplicate, "
              f"{d['background']} on background, {d['missed']} objects missed "
              f"({d['images_with_errors']} images with any error)")
    return s


if __name__ == '__main__':
    main()
