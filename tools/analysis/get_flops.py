"""Parameters and FLOPs of a detector or segmentor config, whole model and backbone alone.

    python tools/analysis/get_flops.py CONFIG [--shape H W] [--cfg-options k=v ...]

Counted by ``mmengine.analysis`` (``FlopAnalyzer``, ``parameter_count``) on one image of
``--shape``: by default 1280 x 800 for detection (mmdet 2.x's ``get_flops`` default; the
count is the same for 800 x 1280) and 512 x 512 for segmentation (the training crop).
One multiply-add counts as one FLOP, as in fvcore and the MACs of the PoolFormer paper.

What is counted is mmengine's default (convolutions, linear layers, matmuls, norms,
upsampling) plus attention's fused kernel; traced, the backbone runs the kernels layer's
plain reference ops, so it gets the same count as the official definition (checked in the
tests). Element-wise
ops, pooling and NMS count nothing, as in mmengine. The model runs in ``mode='tensor'``
(mmdet's and mmseg's own ``get_flops`` do the same): detectors up to their heads' raw
outputs; Mask R-CNN's RoI-head count depends on how many proposals survive NMS (up to
1000; the model's weights are random, seeded). A segmentor's auxiliary head is
training-only and, as in mmseg's tool, neither counted nor included in the parameters.
"""
import argparse
import functools
import os.path as osp
import sys
import warnings

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

DEFAULT_SHAPES = {'mmdet': (1280, 800), 'mmseg': (512, 512)}


def _numel(value) -> int:
    from mmengine.analysis.jit_handles import get_shape
    shape = get_shape(value)
    n = 1
    for s in shape:
        n *= s
    return n


def _sdpa(inputs, outputs):
    # q @ k^T and attn @ v: (B, heads, N, d) x (B, heads, M, d) -> (B, heads, N, dv).
    from mmengine.analysis.jit_handles import get_shape
    q, k, v = (get_shape(t) for t in inputs[:3])
    batch_heads = _numel(inputs[0]) // (q[-2] * q[-1])
    return batch_heads * q[-2] * k[-2] * (q[-1] + v[-1])


# Ops that mmengine's analyzer does not know, counted as the layers they implement.
EXTRA_HANDLES = {
    'aten::scaled_dot_product_attention': _sdpa,
}


def count_flops(model: torch.nn.Module, inputs: tuple):
    """mmengine's FlopAnalyzer with this package's handles; returns the analyzer."""
    from mmengine.analysis import FlopAnalyzer
    analyzer = FlopAnalyzer(model, inputs)
    for name, handle in EXTRA_HANDLES.items():
        analyzer.set_op_handle(name, handle)
    analyzer.unsupported_ops_warnings(False)
    analyzer.uncalled_modules_warnings(False)
    analyzer.tracer_warnings('none')
    # Under torch.jit tracing the kernels layer takes its plain reference ops, which the
    # analyzer counts as the official definition's layers.
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        analyzer.total()  # runs the trace once; later queries reuse it
    return analyzer


def complexity(cfg, shape=None, flops: bool = True) -> dict:
    """Params and FLOPs of the whole model and of ``model.backbone`` for one image.

    With ``flops=False`` only the parameters are counted (no forward pass).
    """
    from mmengine.analysis import parameter_count

    from mmpoolformer.apis.tensor_model import build_model, config_scope, dummy_batch
    scope = config_scope(cfg)
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    model = build_model(cfg)
    params = parameter_count(model)
    result = dict(
        scope=scope, model_type=type(model).__name__,
        backbone_type=type(model.backbone).__name__, shape=shape, params=params[''],
        backbone_params=params['backbone'])
    if not flops:
        return result
    inputs, samples = dummy_batch(model, scope, shape)
    model.forward = functools.partial(model.forward, data_samples=samples, mode='tensor')
    with torch.no_grad():
        analyzer = count_flops(model, (inputs, ))
    return dict(result, input_shape=tuple(inputs.shape), flops=analyzer.total(),
                backbone_flops=analyzer.total('backbone'),
                uncounted=dict(analyzer.unsupported_ops()))


def load(config, cfg_options=None):
    from mmpoolformer.apis import load_config
    args = argparse.Namespace(config=config, cfg_options=cfg_options, launcher='none',
                              work_dir=None, local_rank=0)
    return load_config(args)


def format_report(config, result) -> str:
    b, c, h, w = result['input_shape']
    lines = [
        f'{config}: {result["model_type"]} ({result["scope"]}), backbone '
        f'{result["backbone_type"]}',
        f'input {b}x{c}x{h}x{w} (--shape {result["shape"][0]} {result["shape"][1]}'
        f'{", padded" if (h, w) != tuple(result["shape"]) else ""})',
        f'{"":10}{"params":>12}{"FLOPs":>12}',
        f'{"model":10}{result["params"] / 1e6:>11.2f}M{result["flops"] / 1e9:>11.2f}G',
        f'{"backbone":10}{result["backbone_params"] / 1e6:>11.2f}M'
        f'{result["backbone_flops"] / 1e9:>11.2f}G',
    ]
    if result['uncounted']:
        ops = ', '.join(f'{k.split("::")[-1]} x{v}' for k, v in
                        sorted(result['uncounted'].items(), key=lambda kv: -kv[1])[:8])
        lines.append(f'not counted (element-wise, pooling, NMS, ...): {ops}')
    return '\n'.join(lines)


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input size; default 1280 800 (detection), 512 512 '
                             '(segmentation)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings, e.g. model.backbone.arch=s24')
    args = parser.parse_args(argv)
    if not osp.isfile(args.config):
        sys.exit(f'ERROR: config not found: {args.config}')
    if args.shape and min(args.shape) < 32:
        sys.exit('ERROR: --shape must be at least 32 x 32')
    try:
        result = complexity(load(args.config, args.cfg_options), args.shape)
    except ValueError as e:
        sys.exit(f'ERROR: {e}')
    print(format_report(args.config, result))
    return result


if __name__ == '__main__':
    main()
