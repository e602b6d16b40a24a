"""StarReLU activation (MetaFormer baselines): ``s · relu(x)² + b`` with learnable scalars s and b."""
import torch
from torch import nn

__all__ = ['StarReLU']


class StarReLU(nn.Module):
    """``s · relu(x)² + b`` elementwise, any shape; s = 1 and b = 0 at initialisation."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))
        self.bias = nn.Parameter(torch.zeros(1))

    def reset_parameters(self):
        nn.init.ones_(self.scale)
        nn.init.zeros_(self.bias)

    def forward(self, x):
        return self.scale * torch.relu(x).square() + self.bias
