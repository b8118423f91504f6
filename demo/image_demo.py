"""Draw a detector's or segmentor's predictions over images and save one PNG.

    python demo/image_demo.py IMAGE [IMAGE ...] CONFIG --weights CKPT --out-file OUT.png
        [--score-thr 0.3] [--device cpu] [--cfg-options k=v ...]

Detection configs (mmdet) get boxes, labels and masks drawn by mmdet's visualizer;
segmentation configs (mmseg) get the class map drawn by mmseg's. Several images are tiled
side by side into one picture.
"""
import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))  # run from a checkout


def parse_args(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('inputs', nargs='+', help='image file(s), then the config file')
    parser.add_argument('--weights', required=True, help='checkpoint file')
    parser.add_argument('--out-file', required=True, help='PNG to write')
    parser.add_argument('--score-thr', type=float, default=0.3, help='box score threshold')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.test_cfg.score_thr=0.1')
    args = parser.parse_args(argv)
    if len(args.inputs) < 2:
        parser.error('give at least one image and a config')
    args.images, args.config = args.inputs[:-1], args.inputs[-1]
    return args


def draw_predictions(args, cfg, images, scope):
    """Run the model on each RGB image and return the visualizer's drawings."""
    if scope == 'mmdet':
        from mmdet.apis import inference_detector as inference
        from mmdet.apis import init_detector as init
        from mmdet.registry import VISUALIZERS
        draw_args = dict(pred_score_thr=args.score_thr)
    else:
        from mmseg.apis import inference_model as inference
        from mmseg.apis import init_model as init
        from mmseg.registry import VISUALIZERS
        draw_args = dict(with_labels=True)
    model = init(cfg, args.weights, device=args.device)
    # Draw only: no storage backends (they would warn that they have no save_dir).
    visualizer = VISUALIZERS.build(dict(model.cfg.visualizer, vis_backends=[]))
    visualizer.dataset_meta = model.dataset_meta
    drawn = []
    for image in images:
        result = inference(model, image[..., ::-1].copy())  # the models read BGR
        visualizer.add_datasample('pred', image, data_sample=result, draw_gt=False,
                                  show=False, **draw_args)
        drawn.append(visualizer.get_image())
    return drawn


def main(argv=None):
    args = parse_args(argv)
    import mmcv
    import numpy as np
    from mmengine.config import Config

    import mmpoolformer  # noqa: F401  registers the backbones, allowlists checkpoint types
    from mmpoolformer.checkpoint import CheckpointError, load_checkpoint_file
    for path in args.images:
        if not osp.isfile(path):
            sys.exit(f'ERROR: image not found: {path}')
    images = [mmcv.imread(path, channel_order='rgb') for path in args.images]
    try:  # a missing, unreadable or unsafe checkpoint: one message, before building
        load_checkpoint_file(args.weights)
    except (FileNotFoundError, CheckpointError) as e:
        sys.exit(f'ERROR: {e}')
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    scope = cfg.get('default_scope', 'mmdet')
    if scope not in ('mmdet', 'mmseg'):
        sys.exit(f'ERROR: {args.config} has default_scope {scope!r}; mmdet or mmseg needed')
    drawn = draw_predictions(args, cfg, images, scope)
    height = max(im.shape[0] for im in drawn)
    tiles = [np.pad(im, ((0, height - im.shape[0]), (0, 4), (0, 0)), constant_values=255)
             for im in drawn]
    mmcv.imwrite(np.concatenate(tiles, axis=1)[..., ::-1], args.out_file)
    print(f'saved {args.out_file}')


if __name__ == '__main__':
    main()
