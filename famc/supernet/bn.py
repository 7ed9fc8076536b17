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

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Literal

import torch
from torch import nn

BNConvention = Literal["ofa", "torch", "pooled"]
BN_CONVENTIONS: tuple[str, ...] = ("ofa", "torch", "pooled")


class _Calibrating(nn.Module):
    """Stands in for one BN during calibration: normalises with the batch's own statistics (as
    training does) and accumulates them in float64 by the chosen convention.

    One training-mode kernel both normalises the batch and returns its statistics: computing them
    separately (two matrix-vector products and a square pass) was about twice as slow.
    """

    def __init__(self, bn: nn.BatchNorm2d, convention: BNConvention) -> None:
        super().__init__()
        self.bn, self.convention = bn, convention
        self.weight_n = 0.0  # images (ofa), batches (torch) or pixels (pooled)
        self.mean: torch.Tensor | float = 0.0
        self.second: torch.Tensor | float = 0.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn = self.bn
        # one training-mode kernel normalises and returns the batch mean and 1/sqrt(var + eps);
        # the biased variance is recovered from it in float64
        y, mean, invstd = torch.native_batch_norm(x, bn.weight, bn.bias, None, None, True, 0.0,
                                                  bn.eps)  # fmt: skip
        m64 = mean.double()
        v64 = (invstd.double().pow(-2) - bn.eps).clamp_min(0)
        pixels = x.numel() // x.size(1)
        if self.convention == "ofa":
            w, second = float(x.size(0)), v64
        elif self.convention == "torch":  # cumulative average of unbiased batch variances
            w, second = 1.0, v64 * pixels / max(pixels - 1, 1)
        else:  # pooled: raw second moment, so the total variance is exact
            w, second = pixels, v64 + m64 * m64
        self.mean = self.mean + m64 * w
        self.second = self.second + second * w
        self.weight_n += w
        return y

    def commit(self) -> None:
        """Write the accumulated statistics into the wrapped BN's running buffers."""
        assert isinstance(self.mean, torch.Tensor) and isinstance(self.second, torch.Tensor)
        mean = self.mean / self.weight_n
        var = self.second / self.weight_n
        if self.convention == "pooled":
            var = var - mean * mean
        bn = self.bn
        assert bn.running_mean is not None and bn.running_var is not None
        bn.running_mean.copy_(mean.to(bn.running_mean.dtype))
        bn.running_var.copy_(var.clamp_min(0).to(bn.running_var.dtype))
        if bn.num_batches_tracked is not None:
            bn.num_batches_tracked.fill_(0)


@contextmanager
def calibrating(model: nn.Module, convention: BNConvention = "ofa") -> Iterator[None]:
    """Within the block, every BN of ``model`` normalises with its batch's statistics and
    accumulates them; on a normal exit they become its running statistics (reset first). Callers
    that do not run ``model`` as one forward (a prefix tree runs its layers path by path) feed
    the layers themselves."""
    if convention not in BN_CONVENTIONS:
        raise ValueError(f"unknown BN convention {convention!r}; use one of {BN_CONVENTIONS}")
    swapped: list[tuple[nn.Module, str, _Calibrating]] = []
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.BatchNorm2d):
                stand_in = _Calibrating(child, convention)
                setattr(parent, name, stand_in)
                swapped.append((parent, name, stand_in))
    model.eval()
    try:
        yield
        if any(stand_in.weight_n == 0 for _, _, stand_in in swapped):
            raise ValueError("BN re-calibration needs at least one batch")
        for _, _, stand_in in swapped:
            stand_in.commit()
    finally:
        for parent, name, stand_in in swapped:
            setattr(parent, name, stand_in.bn)


@torch.no_grad()
def recalibrate(
    model: nn.Module, batches: Iterable[torch.Tensor], convention: BNConvention = "ofa"
) -> nn.Module:
    """Reset every BN's running statistics and re-estimate them over ``batches``; returns the
    model in eval mode. Parameters are untouched."""
    with calibrating(model, convention):
        for x in batches:
            model(x)
    return model
