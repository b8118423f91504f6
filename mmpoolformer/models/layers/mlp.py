import torch
import torch.nn as nn

from .. import kernels
from .activations import build_act


class Mlp(nn.Module):
    """Channel MLP on (B, H, W, C) tensors: fc1 -> act -> drop -> fc2 -> drop.

    ``fc1``/``fc2`` are ``nn.Linear``; they equal the official 1x1 convolutions with the
    trailing (1, 1) kernel dims squeezed (checkpoint conversion does that).
    """

    def __init__(self, dim: int, hidden_dim: int, act_cfg: dict, drop: float = 0.,
                 bias: bool = True):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim, bias=bias)
        self.act = build_act(act_cfg)
        self.fc2 = nn.Linear(hidden_dim, dim, bias=bias)
        self.drop = nn.Dropout(drop) if drop > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(kernels.linear(x, self.fc1)))
        return self.drop(kernels.linear(x, self.fc2))
