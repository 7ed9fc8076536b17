"""Test helper: non-trivial batch-norm state, so a conformance check cannot pass by accident."""

from __future__ import annotations

import torch
from torch import nn


def randomise_bn(net: nn.Module, seed: int) -> None:
    """Random affine parameters and running statistics in every BatchNorm2d of ``net``."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
