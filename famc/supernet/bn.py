"""BatchNorm re-calibration of an extracted sub-network.

Shared BN statistics belong to no single sub-network, so every evaluated architecture gets fresh
statistics from a calibration subset. During calibration each BN normalises with the current batch's
own statistics (as in training); what differs between implementations is how the per-batch
statistics are combined into running statistics:

- ``ofa``    (default): batch-size-weighted mean of per-batch means and *biased* per-batch variances
  (Once-for-All's ``set_running_statistics``);
- ``torch``: PyTorch's cumulative average (``momentum=None``): unweighted mean of per-batch means and
  *unbiased* variances;
- ``pooled``: the exact mean and (biased) variance over every calibration pixel.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import torch
from torch import nn

BNConvention = Literal["ofa", "torch", "pooled"]
BN_CONVENTIONS: tuple[str, ...] = ("ofa", "torch", "pooled")


class _Stats:
    """Float64 per-channel accumulators for one BN layer."""

    def __init__(self) -> None:
        self.n = 0.0  # images (ofa) or pixels (pooled)
        self.mean: torch.Tensor | float = 0.0
        self.second: torch.Tensor | float = 0.0

    def hook(self, convention: BNConvention):  # noqa: ANN201 - returns a torch hook
        def record(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            x = inputs[0].detach().double()
            if convention == "ofa":
                var, mean = torch.var_mean(x, dim=(0, 2, 3), unbiased=False)
                self.mean = self.mean + mean * x.size(0)
                self.second = self.second + var * x.size(0)
                self.n += x.size(0)
            else:  # pooled: raw first and second moments over every pixel
                self.mean = self.mean + x.sum(dim=(0, 2, 3))
                self.second = self.second + (x * x).sum(dim=(0, 2, 3))
                self.n += x.numel() / x.size(1)

        return record

    def result(self, convention: BNConvention) -> tuple[torch.Tensor, torch.Tensor]:
        assert isinstance(self.mean, torch.Tensor) and isinstance(self.second, torch.Tensor)
        mean = self.mean / self.n
        if convention == "ofa":
            return mean, self.second / self.n
        return mean, self.second / self.n - mean * mean


@torch.no_grad()
def recalibrate(
    model: nn.Module, batches: Iterable[torch.Tensor], convention: BNConvention = "ofa"
) -> nn.Module:
    """Reset every BN's running statistics and re-estimate them over ``batches``; returns the
    model in eval mode. Parameters are untouched."""
    if convention not in BN_CONVENTIONS:
        raise ValueError(f"unknown BN convention {convention!r}; use one of {BN_CONVENTIONS}")
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    saved_momentum = [m.momentum for m in bns]
    stats = [_Stats() for _ in bns]
    handles = []
    for m, s in zip(bns, stats, strict=True):
        m.reset_running_stats()
        m.momentum = None
        if convention != "torch":
            handles.append(m.register_forward_pre_hook(s.hook(convention)))
    model.train()
    try:
        seen = 0
        for x in batches:
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("BN re-calibration needs at least one batch")
    finally:
        for h in handles:
            h.remove()
        for m, momentum in zip(bns, saved_momentum, strict=True):
            m.momentum = momentum
        model.eval()
    if convention != "torch":
        for m, s in zip(bns, stats, strict=True):
            mean, var = s.result(convention)
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.copy_(mean.to(m.running_mean.dtype))
            m.running_var.copy_(var.clamp_min(0).to(m.running_var.dtype))
    return model
