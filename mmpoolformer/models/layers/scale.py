import torch
import torch.nn as nn


class Scale(nn.Module):
    """A learnable per-channel scale (layer scale or res scale), shape (C,).

    Applied to the last axis, i.e. to (B, H, W, C) tensors.
    """

    def __init__(self, dim: int, init_value: float = 1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.full((dim,), float(init_value)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Type promotion as in the official definition: under autocast a bf16 x times the
        # fp32 scale is fp32, so the residual stream stays fp32 and a small layer-scaled
        # update is not rounded away.
        return x * self.scale

    def extra_repr(self) -> str:
        return f'dim={self.scale.numel()}'
