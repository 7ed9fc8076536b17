"""Elastic operators: weight-sharing layers that run any prefix of their channels and kernel.

Every operator stores its *largest* weight and slices it per call (OFA's dynamic layers). Parameter
names follow Once-for-All's state dicts after its own key normalisation (``.conv.weight``,
``.bn.weight``), so OFA checkpoints load without a conversion step.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn

from famc.space.layers import mid_channels, se_mid
from famc.space.presets import KernelTransform


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def act_fn(name: str, x: torch.Tensor) -> torch.Tensor:
    if name == "relu":
        return F.relu(x)
    if name == "h_swish":
        return F.hardswish(x)
    raise ValueError(f"unknown activation {name!r}")


class ElasticBatchNorm(nn.BatchNorm2d):
    """BatchNorm over the first ``C`` channels of its input (running stats updated in place).

    Under ``torchrun`` (a process group of several ranks) training-mode statistics are reduced over
    all ranks, so a step normalises with the *global* batch's statistics exactly as a single process
    would: DDP training then differs from single-process training only by float rounding.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        if self.training and _world_size() > 1:
            return self._synced(x)
        if c == self.num_features:
            return super().forward(x)
        training = self.training or not self.track_running_stats
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
        assert self.running_mean is not None and self.running_var is not None
        return F.batch_norm(
            x,
            self.running_mean[:c],
            self.running_var[:c],
            self.weight[:c],
            self.bias[:c],
            training,
            self.momentum if self.momentum is not None else 0.0,
            self.eps,
        )

    def _synced(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        xd = x.double()  # E[x²] − E[x]² cancels badly in float32
        local = torch.cat(
            [xd.sum((0, 2, 3)), (xd * xd).sum((0, 2, 3)), xd.new_tensor([x.numel() / c])]
        )
        total = dist_nn.all_reduce(local)  # differentiable: gradients flow through the stats
        n = total[-1]
        mean64 = total[:c] / n
        var = (total[c : 2 * c] / n - mean64 * mean64).float()
        mean = mean64.float()
        assert self.running_mean is not None and self.running_var is not None
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean[:c].mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var[:c].mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
            self.num_batches_tracked.add_(1)
        scale = self.weight[:c] * torch.rsqrt(var + self.eps)
        shift = self.bias[:c] - mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def active_state(self, c: int) -> dict[str, torch.Tensor]:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        return {
            "weight": self.weight[:c],
            "bias": self.bias[:c],
            "running_mean": self.running_mean[:c],
            "running_var": self.running_var[:c],
            "num_batches_tracked": self.num_batches_tracked,
        }


class PointwiseConv(nn.Module):
    """1×1 convolution over a channel prefix, no bias (OFA's ``DynamicConv2d``)."""

    def __init__(self, in_c: int, out_c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(out_c, in_c, 1, 1))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, out_c: int, in_c: int) -> torch.Tensor:
        return self.weight[:out_c, :in_c].contiguous()

    def forward(self, x: torch.Tensor, out_c: int) -> torch.Tensor:
        return F.conv2d(x, self.active_weight(out_c, x.size(1)))


class DepthwiseConv(nn.Module):
    """Depthwise k×k convolution whose smaller kernels derive from the centre of the largest.

    ``matrix``: OFA's learned per-layer transforms (``7to5_matrix``, ``5to3_matrix``), applied step by
    step from the largest kernel down; ``crop``: the plain centre crop (AttentiveNAS), so a smaller
    kernel's concrete weights are a literal slice of the larger one's.
    """

    def __init__(
        self, channels: int, kernels: tuple[int, ...], stride: int, transform: KernelTransform
    ) -> None:
        super().__init__()
        self.kernels = tuple(sorted(kernels))
        self.stride = stride
        self.transform = transform
        self.weight = nn.Parameter(torch.empty(channels, 1, self.kernels[-1], self.kernels[-1]))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")
        if transform == "matrix":
            for big, small in zip(self.kernels[1:], self.kernels[:-1], strict=True):
                self.register_parameter(f"{big}to{small}_matrix", nn.Parameter(torch.eye(small**2)))

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        w = self.weight[:channels]
        big = self.kernels[-1]
        if self.transform == "crop":
            start = (big - kernel) // 2
            return w[:, :, start : start + kernel, start : start + kernel].contiguous()
        for src, dst in zip(self.kernels[::-1], self.kernels[-2::-1], strict=False):
            if src <= kernel:
                break
            start = (src - dst) // 2
            centre = w[:, :, start : start + dst, start : start + dst].reshape(-1, dst * dst)
            w = F.linear(centre, getattr(self, f"{src}to{dst}_matrix")).view(channels, 1, dst, dst)
        return w.contiguous()

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        c = x.size(1)
        return F.conv2d(x, self.active_weight(c, kernel), None, self.stride, kernel // 2, 1, c)


class SqueezeExcite(nn.Module):
    """SE over a channel prefix; its hidden width follows the active channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_mid(channels)
        self.fc = nn.Module()
        self.fc.reduce = nn.Conv2d(channels, mid, 1)
        self.fc.expand = nn.Conv2d(mid, channels, 1)

    def active_state(self, c: int) -> dict[str, torch.Tensor]:
        m = se_mid(c)
        reduce, expand = self.fc.reduce, self.fc.expand
        assert reduce.bias is not None and expand.bias is not None
        return {
            "reduce.weight": reduce.weight[:m, :c],
            "reduce.bias": reduce.bias[:m],
            "expand.weight": expand.weight[:c, :m],
            "expand.bias": expand.bias[:c],
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.active_state(x.size(1))
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, s["reduce.weight"].contiguous(), s["reduce.bias"]))
        y = F.conv2d(y, s["expand.weight"].contiguous(), s["expand.bias"])
        return x * F.hardsigmoid(y)


class _Stage(nn.Module):
    """Named container so parameter paths read ``depth_conv.conv.weight`` like OFA's."""


class ElasticMBConv(nn.Module):
    """One inverted-residual slot of the supernet, with elastic kernel and expand ratio."""

    def __init__(
        self,
        in_c: int,
        out_c: int,
        kernels: tuple[int, ...],
        expands: tuple[int, ...],
        stride: int,
        act: str,
        se: bool,
        transform: KernelTransform,
    ) -> None:
        super().__init__()
        self.in_c, self.out_c, self.stride, self.act = in_c, out_c, stride, act
        self.has_expand = max(expands) != 1
        max_mid = mid_channels(in_c, max(expands)) if self.has_expand else in_c
        if self.has_expand:
            self.inverted_bottleneck = _Stage()
            self.inverted_bottleneck.conv = PointwiseConv(in_c, max_mid)
            self.inverted_bottleneck.bn = ElasticBatchNorm(max_mid)
        self.depth_conv = _Stage()
        self.depth_conv.conv = DepthwiseConv(max_mid, kernels, stride, transform)
        self.depth_conv.bn = ElasticBatchNorm(max_mid)
        if se:
            self.depth_conv.se = SqueezeExcite(max_mid)
        self.point_linear = _Stage()
        self.point_linear.conv = PointwiseConv(max_mid, out_c)
        self.point_linear.bn = ElasticBatchNorm(out_c)

    @property
    def se(self) -> SqueezeExcite | None:
        se = getattr(self.depth_conv, "se", None)
        return se if isinstance(se, SqueezeExcite) else None

    def mid(self, expand: int) -> int:
        return mid_channels(self.in_c, expand) if self.has_expand else self.in_c

    def forward(self, x: torch.Tensor, kernel: int, expand: int) -> torch.Tensor:
        mid = self.mid(expand)
        y = x
        if self.has_expand:
            y = self.inverted_bottleneck.conv(y, mid)
            y = act_fn(self.act, self.inverted_bottleneck.bn(y))
        y = act_fn(self.act, self.depth_conv.bn(self.depth_conv.conv(y, kernel)))
        se = self.se
        if se is not None:
            y = se(y)
        y = self.point_linear.bn(self.point_linear.conv(y, self.out_c))
        return x + y if self.stride == 1 and self.in_c == self.out_c else y

    def active_state(self, kernel: int, expand: int) -> dict[str, torch.Tensor]:
        """Concrete weights of this slot, keyed like ``famc.supernet.static.MBConv``."""
        mid = self.mid(expand)
        out: dict[str, torch.Tensor] = {}
        if self.has_expand:
            out["expand.0.weight"] = self.inverted_bottleneck.conv.active_weight(mid, self.in_c)
            for k, v in self.inverted_bottleneck.bn.active_state(mid).items():
                out[f"expand.1.{k}"] = v
        out["depthwise.0.weight"] = self.depth_conv.conv.active_weight(mid, kernel)
        for k, v in self.depth_conv.bn.active_state(mid).items():
            out[f"depthwise.1.{k}"] = v
        se = self.se
        if se is not None:
            for k, v in se.active_state(mid).items():
                out[f"se.{k}"] = v
        out["project.0.weight"] = self.point_linear.conv.active_weight(self.out_c, mid)
        for k, v in self.point_linear.bn.active_state(self.out_c).items():
            out[f"project.1.{k}"] = v
        return out
