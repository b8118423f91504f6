"""Generate the synthetic shapes dataset (COCO and ADE20K layouts), deterministic by seed.

    python tools/dataset_converters/make_shapes.py data/shapes [--num-train 400]
        [--num-val 50] [--size 256] [--seed 0] [--tasks det seg] [--force]

det: COCO's layout under <root>/coco/, with boxes and instance masks (polygons and RLE), for
RetinaNet and Mask R-CNN. seg: ADE20K's layout under <root>/ade/ADEChallengeData2016/, for
Semantic FPN.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmpoolformer.datasets import generate, is_generated  # noqa: E402


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('root', nargs='?', default='data/shapes')
    parser.add_argument('--num-train', type=int, default=400)
    parser.add_argument('--num-val', type=int, default=50)
    parser.add_argument('--size', type=int, default=256, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--tasks', nargs='+', choices=['det', 'seg'], default=['det', 'seg'],
                        help='det: COCO layout with boxes and instance masks (RetinaNet, '
                             'Mask R-CNN); seg: ADE20K layout (Semantic FPN)')
    parser.add_argument('--force', action='store_true', help='regenerate if present')
    args = parser.parse_args(argv)
    if is_generated(args.root, args.tasks) and not args.force:
        print(f'{args.root}: already generated ({", ".join(args.tasks)}); --force to redo')
        return
    written = generate(args.root, args.num_train, args.num_val, args.seed, args.size,
                       tuple(args.tasks))
    for task, paths in written.items():
        print(f'{task}: ' + ', '.join(paths))


if __name__ == '__main__':
    main()
