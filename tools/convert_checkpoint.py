"""Convert a PoolFormer checkpoint to this package's layout, with a per-key report.

    # ImageNet weights (official, mmpretrain or timm) -> backbone weights, checked against
    # the backbone of a config, or of a named arch:
    python tools/convert_checkpoint.py SRC DST --config configs/retinanet_poolformer_s12.py
    python tools/convert_checkpoint.py SRC DST --arch s12 [--type PoolFormer] [--prefix P]

    # A detector/segmentor trained by the official code (mmdet 2.x / mmseg 0.x) -> a
    # checkpoint that loads strictly into the model of the matching config here:
    python tools/convert_checkpoint.py SRC DST --config configs/mask_rcnn_poolformer_s12.py

The mode follows the checkpoint: one with ``backbone.*`` and neck/head keys is a whole
model and needs ``--config``. Every key is listed (source -> ours, shape); any weight
without a place, missing weight or shape mismatch stops the conversion with one error
line and nothing is written. The source is read as data only (``weights_only``); DST is
written atomically (temporary file, then rename).
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='checkpoint to convert (path or URL)')
    parser.add_argument('dst', help='file to write')
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument('--config', help='config whose model (whole-model checkpoints) or '
                                         'backbone (ImageNet checkpoints) must load it')
    target.add_argument('--arch', help='backbone arch for ImageNet checkpoints, e.g. s12')
    parser.add_argument('--type', default='PoolFormer',
                        help='backbone class with --arch (default PoolFormer)')
    parser.add_argument('--prefix', help='take only keys under this prefix (ImageNet mode)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of --config')
    parser.add_argument('--quiet', action='store_true', help='print the summary only')
    return parser.parse_args(argv)


def build_target(args, dense: bool):
    """The whole model (dense) or the backbone (ImageNet) the checkpoint must fit."""
    import importlib

    from mmengine.registry import DefaultScope

    from mmpoolformer.registry import MODELS
    if args.config is None:
        if dense:
            raise ValueError('this is a whole detector/segmentor checkpoint: give the '
                             '--config it must load into')
        return MODELS.build(dict(type=args.type, arch=args.arch))
    from mmpoolformer.apis import load_config
    cfg = load_config(argparse.Namespace(config=args.config, cfg_options=args.cfg_options,
                                         launcher='none', work_dir=None, local_rank=0))
    scope = cfg.get('default_scope', 'mmdet')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    if dense:
        with DefaultScope.overwrite_default_scope(scope):
            return registry.build(cfg.model)
    backbone = dict(cfg.model.backbone)
    backbone.pop('init_cfg', None)  # build only; nothing to download
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(backbone)


def report(conversion, quiet=False) -> str:
    lines = []
    if not quiet:
        width = max((len(s) for s, _ in conversion.renamed), default=10)
        lines.append(f'{"source key":<{width}}    {"key":<48} shape')
        for src, ours in conversion.renamed:
            shape = tuple(conversion.state_dict[ours].shape)
            arrow = '==' if src == ours else '->'
            lines.append(f'{src:<{width}} {arrow} {ours:<48} {shape}')
        for src, why in conversion.dropped:
            lines.append(f'{src:<{width}} xx dropped: {why}')
        for key in conversion.left_at_init:
            lines.append(f'{"":<{width}} ++ {key:<48} left at init (not in ImageNet '
                         f'checkpoints)')
    renamed = sum(s != o for s, o in conversion.renamed)
    lines.append(f'{conversion.layout} layout: {len(conversion.renamed)} keys converted '
                 f'({renamed} renamed), {len(conversion.dropped)} dropped, '
                 f'{len(conversion.left_at_init)} left at init')
    return '\n'.join(lines)


def main(argv=None):
    args = parse_args(argv)
    import io

    import torch
    from mmengine import fileio

    import mmpoolformer  # noqa: F401  registers models; makes local writes atomic
    from mmpoolformer.checkpoint import CheckpointError, load_checkpoint_file
    from mmpoolformer.checkpoint.convert_dense import convert_dense, convert_imagenet, is_dense
    try:
        checkpoint = load_checkpoint_file(args.src)
        dense = is_dense(checkpoint)
        target = build_target(args, dense)
        if dense:
            conversion = convert_dense(checkpoint, target)
        else:
            conversion = convert_imagenet(checkpoint, target, args.prefix)
    except (FileNotFoundError, CheckpointError, ValueError, KeyError) as e:
        sys.exit(f'ERROR: {str(e).strip(chr(34))}; nothing written')
    print(report(conversion, args.quiet))
    meta = dict(converted_from=args.src, layout=conversion.layout,
                torch_version=str(torch.__version__))
    if conversion.meta:
        meta['dataset_meta'] = conversion.meta
    with io.BytesIO() as buffer:
        torch.save(dict(meta=meta, state_dict=conversion.state_dict), buffer)
        fileio.put(buffer.getvalue(), args.dst)  # atomic: mmpoolformer's local backend
    print(f'saved {args.dst}')
    return conversion


if __name__ == '__main__':
    main()
