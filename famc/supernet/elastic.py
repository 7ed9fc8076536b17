"""Elastic (weight-sharing) layers and blocks, each able to extract its static twin.

Every operator stores its *largest* weight and slices it per call (OFA's dynamic layers). A block
kind is one elastic class here plus its static twin in ``famc.supernet.static``: the elastic block
runs any ``LayerSpec`` its slot admits (``forward(x, spec)``) and ``extract(spec)`` returns the twin
holding copies of exactly the weights that spec uses (OFA's ``get_active_subnet``, with explicit
arguments instead of ``active_*`` attributes). Weights are handed over by attribute, never by key
string, and extraction refuses to return a block with a weight left unfilled. Parameter names follow
Once-for-All's normalised state dicts (``.conv.weight``, ``.bn.weight``), so OFA checkpoints load
without a conversion step.
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn

from famc.space.layers import LayerSpec, Slot, se_mid
from famc.space.presets import KernelTransform
from famc.supernet.static import (
    Bottleneck,
    Classifier,
    Conv,
    ConvBnAct,
    FeatureMix,
    FinalExpand,
    GlobalPool,
    MaxPool,
    MBConv,
    MBConvShortcut,
    activation,
)
from famc.supernet.static import SqueezeExcite as StaticSqueezeExcite


def _world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def fill(module: nn.Module, **tensors: torch.Tensor) -> None:
    """Give ``module`` (built on the meta device) copies of ``tensors`` by attribute name."""
    for name, value in tensors.items():
        copy = value.detach().clone()
        if isinstance(getattr(module, name), nn.Parameter):
            setattr(module, name, nn.Parameter(copy))
        else:
            setattr(module, name, copy)


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
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
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
        assert self.num_batches_tracked is not None
        with torch.no_grad():
            m = self.momentum if self.momentum is not None else 0.1
            self.running_mean[:c].mul_(1 - m).add_(mean.detach(), alpha=m)
            self.running_var[:c].mul_(1 - m).add_(var.detach() * n / (n - 1), alpha=m)
            self.num_batches_tracked.add_(1)
        scale = self.weight[:c] * torch.rsqrt(var + self.eps)
        shift = self.bias[:c] - mean * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def fill_into(self, bn: nn.BatchNorm2d, c: int) -> None:
        assert self.running_mean is not None and self.running_var is not None
        assert self.num_batches_tracked is not None
        fill(bn, weight=self.weight[:c], bias=self.bias[:c], running_mean=self.running_mean[:c],
             running_var=self.running_var[:c],
             num_batches_tracked=self.num_batches_tracked)  # fmt: skip


class ElasticConv2d(nn.Module):
    """Dense k×k convolution from an input-channel prefix to an output-channel prefix, no bias
    (OFA's ``DynamicConv2d``)."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(out_c, in_c, kernel, kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, out_c: int, in_c: int, kernel: int) -> torch.Tensor:
        return self.weight[:out_c, :in_c].contiguous()

    def forward(self, x: torch.Tensor, out_c: int, kernel: int) -> torch.Tensor:
        w = self.active_weight(out_c, x.size(1), kernel)
        return F.conv2d(x, w, None, self.stride, w.size(-1) // 2)


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

    def active_weight(self, out_c: int, in_c: int, kernel: int) -> torch.Tensor:
        w = self.weight[:out_c]
        big = self.kernels[-1]
        if self.transform == "crop":
            start = (big - kernel) // 2
            return w[:, :, start : start + kernel, start : start + kernel].contiguous()
        for src, dst in zip(self.kernels[::-1], self.kernels[-2::-1], strict=False):
            if src <= kernel:
                break
            start = (src - dst) // 2
            centre = w[:, :, start : start + dst, start : start + dst].reshape(-1, dst * dst)
            w = F.linear(centre, getattr(self, f"{src}to{dst}_matrix")).view(out_c, 1, dst, dst)
        return w.contiguous()

    def forward(self, x: torch.Tensor, out_c: int, kernel: int) -> torch.Tensor:
        c = x.size(1)
        return F.conv2d(x, self.active_weight(c, c, kernel), None, self.stride, kernel // 2, 1, c)


class _SqueezeFc(nn.Module):
    """Named container so parameter paths read ``se.fc.reduce.weight`` like OFA's."""

    def __init__(self, channels: int, mid: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)


class SqueezeExcite(nn.Module):
    """SE over a channel prefix; its hidden width follows the active channel count."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_mid(channels)
        self.fc = _SqueezeFc(channels, mid)

    def _active(self, c: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        m = se_mid(c)
        reduce, expand = self.fc.reduce, self.fc.expand
        assert reduce.bias is not None and expand.bias is not None
        return reduce.weight[:m, :c], reduce.bias[:m], expand.weight[:c, :m], expand.bias[:c]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rw, rb, ew, eb = self._active(x.size(1))
        y = x.mean((2, 3), keepdim=True)
        y = F.relu(F.conv2d(y, rw.contiguous(), rb))
        return x * F.hardsigmoid(F.conv2d(y, ew.contiguous(), eb))

    def fill_into(self, se: StaticSqueezeExcite, c: int) -> None:
        rw, rb, ew, eb = self._active(c)
        fill(se.reduce, weight=rw, bias=rb)
        fill(se.expand, weight=ew, bias=eb)


class ElasticConvBn(nn.Module):
    """conv → BN → activation → SE over channel prefixes: the elastic twin of ``ConvBnAct``."""

    def __init__(self, conv: ElasticConv2d | DepthwiseConv, out_c: int, *, bn: bool = True,
                 act: str = "none", se: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.conv = conv
        self.bn = ElasticBatchNorm(out_c) if bn else None
        self.se = SqueezeExcite(out_c) if se else None
        self.act = activation(act)

    def run(self, x: torch.Tensor, out_c: int, kernel: int) -> torch.Tensor:
        x = self.conv(x, out_c, kernel)
        if self.bn is not None:
            x = self.bn(x)
        x = self.act(x)
        return x if self.se is None else self.se(x)

    def fill_into(self, unit: ConvBnAct, out_c: int, in_c: int, kernel: int) -> None:
        """Copy the weights of this unit at ``(out_c, in_c, kernel)`` into a static ``unit``."""
        fill(unit.conv, weight=self.conv.active_weight(out_c, in_c, kernel))
        if self.bn is not None:
            assert unit.bn is not None
            self.bn.fill_into(unit.bn, out_c)
        if self.se is not None:
            assert unit.se is not None
            self.se.fill_into(unit.se, out_c)


class ElasticBlock(nn.Module):
    """A block kind's elastic class: runs any spec its slot admits and extracts its static twin."""

    static: ClassVar[type[nn.Module]]  # the static twin, built from a LayerSpec

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        raise NotImplementedError

    def extract(self, spec: LayerSpec) -> nn.Module:
        raise NotImplementedError


def _on_meta(cls: type[nn.Module], spec: LayerSpec) -> nn.Module:
    """The static twin's skeleton: built on the meta device, so no random init is wasted."""
    with torch.device("meta"):
        return cls(spec)


class _UnitBlock(ElasticConvBn, ElasticBlock):
    """A block kind that is one conv unit (stem, final expand, feature mix)."""

    static: ClassVar[type[ConvBnAct]]
    has_bn: ClassVar[bool] = True

    def __init__(self, slot: Slot) -> None:
        x = slot.layer
        super().__init__(ElasticConv2d(x.in_c, x.out_c, x.kernel, x.stride), x.out_c, bn=self.has_bn,
                         act=x.act)  # fmt: skip

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        y = self.static.finish(self.run(x, spec.out_c, spec.kernel))
        return x + y if spec.skip else y

    def extract(self, spec: LayerSpec) -> nn.Module:
        block = _on_meta(self.static, spec)
        assert isinstance(block, ConvBnAct)
        self.fill_into(block, spec.out_c, spec.in_c, spec.kernel)
        return block


class ConvBlock(_UnitBlock):
    static = Conv


class FinalExpandBlock(_UnitBlock):
    static = FinalExpand


class FeatureMixBlock(_UnitBlock):
    static = FeatureMix
    has_bn = False


class ClassifierBlock(ElasticBlock):
    """The linear classifier over an input-feature prefix."""

    static = Classifier

    def __init__(self, slot: Slot) -> None:
        super().__init__()
        self.linear = nn.Linear(slot.layer.in_c, slot.layer.out_c)

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        return F.linear(
            x, self.linear.weight[: spec.out_c, : x.size(1)], self.linear.bias[: spec.out_c]
        )

    def extract(self, spec: LayerSpec) -> nn.Module:
        block = _on_meta(self.static, spec)
        fill(block, weight=self.linear.weight[: spec.out_c, : spec.in_c],
             bias=self.linear.bias[: spec.out_c])  # fmt: skip
        return block


class _PoolBlock(ElasticBlock):
    """A parameter-free block kind: runs and extracts its static twin as it is."""

    def __init__(self, slot: Slot) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        return self.static(spec)(x)

    def extract(self, spec: LayerSpec) -> nn.Module:
        return self.static(spec)


class MaxPoolBlock(_PoolBlock):
    static = MaxPool


class GlobalPoolBlock(_PoolBlock):
    static = GlobalPool


class MBConvBlock(ElasticBlock):
    """One inverted-residual slot with elastic kernel and expand ratio (OFA's parameter layout)."""

    static: ClassVar[type[MBConv]] = MBConv

    def __init__(self, slot: Slot) -> None:
        super().__init__()
        x = slot.layer
        if x.expand:
            self.inverted_bottleneck = ElasticConvBn(
                ElasticConv2d(x.in_c, x.mid_c), x.mid_c, act=x.act
            )
        self.depth_conv = ElasticConvBn(DepthwiseConv(x.mid_c, slot.kernels, x.stride, slot.transform),
                                        x.mid_c, act=x.act, se=x.se)  # fmt: skip
        self.point_linear = ElasticConvBn(ElasticConv2d(x.mid_c, x.out_c), x.out_c)

    def body(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        y = self.inverted_bottleneck.run(x, spec.mid_c, 1) if spec.expand else x
        y = self.depth_conv.run(y, spec.mid_c, spec.kernel)
        return self.point_linear.run(y, spec.out_c, 1)

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        y = self.body(x, spec)
        return x + y if spec.skip else y

    def extract(self, spec: LayerSpec) -> nn.Module:
        block = _on_meta(self.static, spec)
        assert isinstance(block, MBConv)
        if block.expand is not None:
            self.inverted_bottleneck.fill_into(block.expand, spec.mid_c, spec.in_c, 1)
        self.depth_conv.fill_into(block.depthwise, spec.mid_c, spec.mid_c, spec.kernel)
        self.point_linear.fill_into(block.project, spec.out_c, spec.mid_c, 1)
        return block


class MBConvShortcutBlock(MBConvBlock):
    """AttentiveNAS's block: an MBConv slot whose shortcut always exists (pool when strided, 1×1
    conv over channel prefixes when the width changes). Every slot holds the shortcut conv, as the
    reference supernet does, so its checkpoints load as they are."""

    static = MBConvShortcut

    def __init__(self, slot: Slot) -> None:
        super().__init__(slot)
        x = slot.layer
        self.shortcut = ElasticConvBn(ElasticConv2d(x.in_c, x.out_c), x.out_c, bn=False)

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        residual = x
        if spec.stride > 1:
            residual = F.avg_pool2d(x, spec.stride, padding=x.size(-1) % 2)
        if spec.in_c != spec.out_c:
            residual = self.shortcut.run(residual, spec.out_c, 1)
        return self.body(x, spec) + residual

    def extract(self, spec: LayerSpec) -> nn.Module:
        block = super().extract(spec)
        assert isinstance(block, MBConvShortcut)
        if block.shortcut.conv is not None:
            fill(
                block.shortcut.conv,
                weight=self.shortcut.conv.active_weight(spec.out_c, spec.in_c, 1),
            )
        return block


class BottleneckBlock(ElasticBlock):
    """One ResNet bottleneck slot with elastic expand ratio and width (OFA's
    ``DynamicResNetBottleneckBlock``: hidden width from the output width)."""

    static = Bottleneck

    def __init__(self, slot: Slot) -> None:
        super().__init__()
        x = slot.layer
        self.conv1 = ElasticConvBn(ElasticConv2d(x.in_c, x.mid_c), x.mid_c, act=x.act)
        self.conv2 = ElasticConvBn(ElasticConv2d(x.mid_c, x.mid_c, x.kernel, x.stride), x.mid_c,
                                   act=x.act)  # fmt: skip
        self.conv3 = ElasticConvBn(ElasticConv2d(x.mid_c, x.out_c), x.out_c)
        if not x.skip:
            self.downsample = ElasticConvBn(ElasticConv2d(x.in_c, x.out_c), x.out_c)
        self.act = activation(x.act)

    def forward(self, x: torch.Tensor, spec: LayerSpec) -> torch.Tensor:
        residual = x
        if not spec.skip:
            pooled = F.avg_pool2d(x, spec.stride, ceil_mode=True) if spec.stride > 1 else x
            residual = self.downsample.run(pooled, spec.out_c, 1)
        y = self.conv1.run(x, spec.mid_c, 1)
        y = self.conv3.run(self.conv2.run(y, spec.mid_c, spec.kernel), spec.out_c, 1)
        return self.act(y + residual)

    def extract(self, spec: LayerSpec) -> nn.Module:
        block = _on_meta(self.static, spec)
        assert isinstance(block, Bottleneck)
        self.conv1.fill_into(block.conv1, spec.mid_c, spec.in_c, 1)
        self.conv2.fill_into(block.conv2, spec.mid_c, spec.mid_c, spec.kernel)
        self.conv3.fill_into(block.conv3, spec.out_c, spec.mid_c, 1)
        if block.downsample is not None:
            self.downsample.fill_into(block.downsample, spec.out_c, spec.in_c, 1)
        return block


#: Block kind → elastic class (its ``static`` attribute is the static twin).
BLOCKS: dict[str, type[ElasticBlock]] = {
    "conv": ConvBlock,
    "max_pool": MaxPoolBlock,
    "mbconv": MBConvBlock,
    "mbconv_sc": MBConvShortcutBlock,
    "bottleneck": BottleneckBlock,
    "global_pool": GlobalPoolBlock,
    "final_expand": FinalExpandBlock,
    "feature_mix": FeatureMixBlock,
    "classifier": ClassifierBlock,
}
