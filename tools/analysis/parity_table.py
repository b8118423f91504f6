"""Every family against the official definition on one device: the correctness table.

    python tools/analysis/parity_table.py [--device cpu|cuda]

Train mode, an odd input size, the same weights; truth is the official definition in
float64 on the same device. For ours in float64 and fp32, with the fast paths on (the
default) and off: the relative error of the forward, of the input gradient and of the worst
parameter gradient (max |ours - truth| / max |truth| per tensor). The parity suite
(tests/test_models/test_parity.py) asserts the bounds; this prints the figures.
"""
import argparse
import os.path as osp
import sys

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from mmpoolformer import testing  # noqa: E402
from mmpoolformer.models import kernels  # noqa: E402


def family_errors(family, device):
    ours, ref = testing.paired(family)
    h, w = testing.INPUT_SIZES[family]
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, h, w, generator=gen, dtype=torch.float64).to(device)
    ref = ref.double().to(device).train()
    with torch.no_grad():
        want = [o.cpu() for o in ref(x)]
    weights = [torch.randn(o.shape, generator=gen, dtype=torch.float64).to(device)
               for o in want]
    truth = testing.gradients(ref, x, weights)
    rows = []
    for dtype in (torch.float64, torch.float32):
        for fast in (True, False):
            model = ours.to(device, dtype).train()
            with kernels.fast_paths(fast):
                with torch.no_grad():
                    got = model(x.to(dtype))
                grads = testing.gradients(model, x.to(dtype), [w.to(dtype) for w in weights])
            fwd = max(((g.double().cpu() - t).abs().max() / t.abs().max()).item()
                      for g, t in zip(got, want))
            errs = testing.relative_errors(grads, truth, floor=1e-6 if dtype == torch.float64
                                   else 1e-3)
            # scalar parameters (StarReLU's) are judged in float64 only (see the suite)
            params = [v for k, v in errs.items() if k != 'input'
                      and (dtype == torch.float64 or truth[k].numel() > 1)]
            rows.append((str(dtype).split('.')[-1], 'on' if fast else 'off', fwd,
                         errs['input'], max(params)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    args = parser.parse_args()
    if args.device == 'cuda' and not torch.cuda.is_available():
        sys.exit('--device cuda: torch sees no CUDA device here')
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU')
    print(f'torch {torch.__version__}, {where}')
    print('| family | dtype | fast paths | forward | input gradient | worst parameter gradient |')
    print('|---|---|---|---|---|---|')
    for family in testing.FAMILIES:
        for dtype, fast, fwd, dx, dp in family_errors(family, device):
            print(f'| {family} | {dtype} | {fast} | {fwd:.1e} | {dx:.1e} | {dp:.1e} |',
                  flush=True)


if __name__ == '__main__':
    main()
