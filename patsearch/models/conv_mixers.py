"""The convolutional token mixers, whose deployment form is themselves: FasterNet's partial conv (PConv) and the
full or depthwise 3x3 conv of Table 5."""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["DenseConv", "PartialConv"]


class _DeploysAsItself(nn.Module):
    """A mixer that is its own deployment form and ends in no BN."""

    def deploy(self, keep_output_affine: bool = True) -> nn.Module:
        return self

    def output_affine(self) -> tuple[None, None]:
        """The per-channel affine of a trailing BN that a block may fold forward; None: this mixer has none."""
        return None, None


class PartialConv(_DeploysAsItself):
    """FasterNet's PConv: 3x3 conv on the first C/n_div channels, the rest passed through."""

    def __init__(self, dim: int, n_div: int) -> None:
        super().__init__()
        self.dim_conv = dim // n_div
        self.dim_untouched = dim - self.dim_conv
        self.conv = nn.Conv2d(self.dim_conv, self.dim_conv, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = torch.split(x, [self.dim_conv, self.dim_untouched], dim=1)
        return torch.cat([self.conv(x1), x2], dim=1)


class DenseConv(_DeploysAsItself):
    """A full 3x3 conv (``groups=1``) or depthwise 3x3 conv (``groups=dim``) mixer (Table 5)."""

    def __init__(self, dim: int, depthwise: bool) -> None:
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1, groups=dim if depthwise else 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)
