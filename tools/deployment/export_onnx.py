"""Export a detector or segmentor config (and checkpoint) to ONNX, check it in onnxruntime.

    python tools/deployment/export_onnx.py CONFIG CKPT --out model.onnx [--shape H W]
        [--dynamic] [--benchmark] [--opset 17] [--cfg-options k=v ...]

What is exported is mmdet's / mmseg's ``mode='tensor'``: backbone, neck and heads up to
their raw outputs (RetinaNet: per-level class scores and box deltas; Mask R-CNN: the RoI
head's class scores, box deltas and mask logits for the RPN's proposals, the RPN's
decoding, NMS and ranking included; Semantic FPN: the segmentation logits). Decoding, NMS
and resizing of the final results stay in Python, as in mmdet's own tensor mode. The ONNX
input is the normalised, padded batch that the model's ``data_preprocessor`` makes of an
image.

``--dynamic`` makes batch, height and width dynamic (single-stage detectors and
segmentors; a two-stage detector's RPN bakes the image size into its proposals, so it
exports with a fixed shape, at opset 16 or more for RoIAlign). The tool runs the ONNX
model in onnxruntime on the export input and on a second input (dynamic: another size
and batch 2; fixed: another image of the same size) and prints the largest relative error
against PyTorch; for a two-stage detector, rows of proposals whose RPN scores agree within
the tolerance may stand in either order (``mmpoolformer/deployment/two_stage.py``).
``--benchmark`` also times onnxruntime against eager PyTorch on the CPU.
"""
import argparse
import os.path as osp
import statistics
import sys
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

DEFAULT_SHAPES = {'mmdet': (800, 1216), 'mmseg': (512, 512)}
TOLERANCE = 1e-4  # largest relative error of onnxruntime's outputs against PyTorch's


def tensor_forward(model, samples):
    """``model(x, samples, mode='tensor')`` as a function of the image batch alone."""
    def forward(x):
        return model(x, samples, mode='tensor')
    return forward


def relative_error(got, want) -> float:
    return max(((g - w).abs().max() / w.abs().max().clamp(min=1e-12)).item()
               for g, w in zip(got, want))


def median_seconds(fn, repeat=10):
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def export(config, checkpoint, out, shape=None, dynamic=False, opset=17, benchmark=False,
           cfg_options=None, log=print, dynamo=False) -> dict:
    from mmpoolformer.apis import load_config
    from mmpoolformer.apis.tensor_model import build_model, config_scope, dummy_batch
    from mmpoolformer.deployment import export_onnx, flatten_outputs, onnxruntime_outputs
    from mmpoolformer.deployment.export_compat import export_compat
    from mmpoolformer.deployment.two_stage import matched_errors
    args = argparse.Namespace(config=config, cfg_options=cfg_options, launcher='none',
                              work_dir=None, local_rank=0)
    cfg = load_config(args)
    scope = config_scope(cfg)
    model = build_model(cfg, checkpoint)
    two_stage = getattr(model, 'with_rpn', False)
    if dynamic and two_stage:
        raise ValueError(f'{type(model).__name__} is a two-stage detector: its RPN bakes '
                         f'the image size into the proposals, so it exports with a fixed '
                         f'--shape only (drop --dynamic)')
    if two_stage and opset < 16:
        raise ValueError(f'{type(model).__name__} has RoIAlign(aligned=True), which ONNX '
                         f'expresses from opset 16 on: use --opset 16 or more')
    shape = tuple(shape or DEFAULT_SHAPES[scope])
    inputs, samples = dummy_batch(model, scope, shape)
    forward = tensor_forward(model, samples)
    with export_compat(model):
        names = export_onnx(model, inputs, out, dynamic=dynamic, opset=opset,
                            forward=forward, dynamo=dynamo)
    result = dict(scope=scope, model=type(model).__name__, outputs=len(names),
                  input_shape=tuple(inputs.shape))
    checks = [inputs]
    h, w = shape
    if dynamic:  # a second size: another aspect ratio and batch 2
        other, _ = dummy_batch(model, scope, (w * 3 // 4, h), seed=1)
        checks.append(torch.cat([other, other.flip(-1)]))
    else:  # another image of the same size: nothing of the export input's was kept
        checks.append(dummy_batch(model, scope, shape, seed=1)[0])
    errors, moved = [], []
    for x in checks:
        with torch.no_grad():
            want = flatten_outputs(forward(x))
            got = onnxruntime_outputs(out, x)
            if two_stage:
                errs, rows = matched_errors(model, x, samples, got, want, TOLERANCE)
                errors.append((tuple(x.shape), max(errs)))
                moved.append(rows)
            else:
                errors.append((tuple(x.shape), relative_error(got, want)))
    result['errors'] = errors
    if two_stage:
        result['rows_matched_elsewhere'] = moved
    log(f'exported {config} ({result["model"]}, mode=tensor) to {out}: '
        f'{len(names)} outputs, opset {opset}, {"dynamic" if dynamic else "fixed"} shape')
    for i, (s, err) in enumerate(errors):
        tied = f' ({moved[i]} rows matched across proposals with RPN scores within ' \
            f'{TOLERANCE:.0e})' if two_stage else ''
        log(f'onnxruntime vs PyTorch at input {s}: max relative error {err:.1e}{tied}')
    result['faithful'] = max(err for _, err in errors) <= TOLERANCE
    if not result['faithful']:
        log(f'ERROR: the ONNX model does not reproduce PyTorch (tolerance {TOLERANCE:.0e}); '
            f'do not deploy it')
    if benchmark:
        import onnxruntime as ort
        session = ort.InferenceSession(out, providers=['CPUExecutionProvider'])
        feed = {session.get_inputs()[0].name: inputs.numpy()}
        t_ort = median_seconds(lambda: session.run(None, feed))
        with torch.no_grad():
            t_torch = median_seconds(lambda: forward(inputs))
        result['latency'] = dict(onnxruntime=t_ort, pytorch=t_torch)
        log(f'CPU latency at input {tuple(inputs.shape)} ({torch.get_num_threads()} '
            f'threads, median of 10): onnxruntime {t_ort * 1e3:.1f} ms, eager PyTorch '
            f'{t_torch * 1e3:.1f} ms ({t_torch / t_ort:.2f}x)')
    return result


def main(argv=None):
    from mmengine.config import DictAction
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file (.pth)')
    parser.add_argument('--out', required=True, help='the .onnx file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='export input size; default 800 1216 (detection), 512 512 '
                             '(segmentation)')
    parser.add_argument('--dynamic', action='store_true',
                        help='dynamic batch, height and width')
    parser.add_argument('--opset', type=int, default=17)
    parser.add_argument('--benchmark', action='store_true',
                        help='time onnxruntime against eager PyTorch on the CPU')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config settings')
    args = parser.parse_args(argv)
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            sys.exit(f'ERROR: {what} not found: {path}')
    if args.shape and min(args.shape) < 32:
        sys.exit('ERROR: --shape must be at least 32 x 32')
    try:
        result = export(args.config, args.checkpoint, args.out, args.shape, args.dynamic,
                        args.opset, args.benchmark, args.cfg_options)
    except ValueError as e:
        sys.exit(f'ERROR: {e}')
    if not result['faithful']:
        sys.exit(1)
    return result


if __name__ == '__main__':
    main()
