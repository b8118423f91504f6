from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper

from ..registry import OPTIM_WRAPPERS


@OPTIM_WRAPPERS.register_module()
class AmpCPUOptimWrapper(OptimWrapper):
    """Mixed precision on the CPU: forward and loss under bf16 autocast.

    mmengine's ``AmpOptimWrapper`` refuses to run without an accelerator. On CPUs with
    bf16 matmul units, bf16 autocast makes training steps markedly faster. bf16 has fp32's
    exponent range, so no loss scaling is needed; parameters, gradients and optimizer state
    stay fp32. ``tools/train.py --amp`` picks this wrapper when no CUDA device is present
    (use it as ``type='mmpoolformer.AmpCPUOptimWrapper'``).
    """

    @contextmanager
    def optim_context(self, model: torch.nn.Module):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
