import torch
import torch.nn as nn


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's branch with probability ``drop_prob``
    and scale the kept ones by 1 / (1 - drop_prob); the identity otherwise."""

    def __init__(self, drop_prob: float = 0.):
        super().__init__()
        self.drop_prob = float(drop_prob)

    @property
    def active(self) -> bool:
        return self.training and self.drop_prob > 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.active:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0], ) + (1, ) * (x.dim() - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f'drop_prob={self.drop_prob}'
