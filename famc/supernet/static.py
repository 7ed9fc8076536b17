"""Readable static models, one class per block kind, each built from one ``LayerSpec``.

These are what famc deploys, exports and times: plain ``nn.Conv2d``/``nn.BatchNorm2d``/activation
modules with concrete weights, no elastic logic, so ONNX/CoreML/TensorRT see an ordinary CNN. A
static model is ``StaticNet(layers)``, its layers in order; a latency table times each layer class
alone, built from the same spec (``BLOCKS[kind].static(spec)``), so what is timed is what ships.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import torch
from torch import nn

from famc.space.layers import LayerSpec, se_mid

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "h_swish": nn.Hardswish,
    "swish": nn.SiLU,
}


def activation(name: str, inplace: bool = False) -> nn.Module:
    """The activation module of a preset's name (``none``: identity)."""
    if name == "none":
        return nn.Identity()
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name](inplace=inplace)


class SqueezeExcite(nn.Module):
    """MobileNetV3 SE: global pool → 1×1 reduce → ReLU → 1×1 expand → hard-sigmoid gate."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        mid = se_mid(channels)
        self.reduce = nn.Conv2d(channels, mid, 1)
        self.expand = nn.Conv2d(mid, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x.mean((2, 3), keepdim=True)
        y = self.expand(torch.relu(self.reduce(y)))
        return x * nn.functional.hardsigmoid(y)


class ConvBnAct(nn.Module):
    """conv → BN → activation → squeeze-excite, BN and SE optional: every block is made of these."""

    def __init__(self, in_c: int, out_c: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                 *, bn: bool = True, act: str = "none", se: bool = False) -> None:  # fmt: skip
        super().__init__()
        self.conv = nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_c) if bn else None
        self.act = activation(act, inplace=True)
        self.se = SqueezeExcite(out_c) if se else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        x = self.act(x)
        return self.finish(x if self.se is None else self.se(x))

    @staticmethod
    def finish(x: torch.Tensor) -> torch.Tensor:
        """What the block does after its unit (pooling, flattening); shared with its elastic twin."""
        return x

    @torch.no_grad()
    def fold(self) -> None:
        """Fold the BN into the conv (exact in eval mode up to rounding), for fast scoring only:
        deployed members keep their BN so exporters and users see the ordinary architecture."""
        bn, conv = self.bn, self.conv
        if bn is None:
            return
        assert bn.running_mean is not None and bn.running_var is not None
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        conv.weight.mul_(scale.view(-1, 1, 1, 1))
        conv.bias = nn.Parameter(bn.bias - bn.running_mean * scale)
        self.bn = None


class Conv(ConvBnAct):
    """A plain k×k convolution layer (the stem), residual when its spec says so (OFA-ResNet's
    stem residual conv: the activation comes before the addition)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec.in_c, spec.out_c, spec.kernel, spec.stride, act=spec.act)
        self.skip = spec.skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return x + y if self.skip else y


class MaxPool(nn.MaxPool2d):
    """k×k max-pool, 'same' padding (ResNet's stem)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec.kernel, spec.stride, spec.kernel // 2)


class GlobalPool(nn.Module):
    """Global average pool, flattened for the classifier (ResNet's head)."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3))


class MBConv(nn.Module):
    """Inverted residual: optional 1×1 expand, k×k depthwise (+SE), 1×1 linear projection."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.skip = spec.skip
        self.expand = ConvBnAct(spec.in_c, spec.mid_c, act=spec.act) if spec.expand else None
        self.depthwise = ConvBnAct(spec.mid_c, spec.mid_c, spec.kernel, spec.stride, spec.mid_c,
                                   act=spec.act, se=spec.se)  # fmt: skip
        self.project = ConvBnAct(spec.mid_c, spec.out_c)

    def body(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        return self.project(self.depthwise(y))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.skip else y


class Shortcut(nn.Module):
    """AttentiveNAS's shortcut: s×s average pool (padded on odd sizes, pads counted) when the
    block strides, then a 1×1 conv without BN when the width changes; else the identity."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        s = spec.stride
        self.pool = nn.AvgPool2d(s, s, padding=spec.in_hw % 2) if s > 1 else None
        self.conv = (
            nn.Conv2d(spec.in_c, spec.out_c, 1, bias=False) if spec.in_c != spec.out_c else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pool is not None:
            x = self.pool(x)
        return x if self.conv is None else self.conv(x)


class MBConvShortcut(MBConv):
    """Inverted residual whose every block is residual (AttentiveNAS, BigNAS): the shortcut pools
    and projects where the shapes differ."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec)
        self.shortcut = Shortcut(spec)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class PoolConv(ConvBnAct):
    """OFA-ResNet's ``avgpool_conv`` downsample: average pool (ceil mode) → 1×1 conv → BN."""

    def __init__(self, in_c: int, out_c: int, stride: int) -> None:
        super().__init__(in_c, out_c)
        self.pool = nn.AvgPool2d(stride, stride, ceil_mode=True) if stride > 1 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x if self.pool is None else self.pool(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1×1 reduce, k×k (strided), 1×1 expand; identity or pooled-projection
    shortcut; activation after the addition."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.conv1 = ConvBnAct(spec.in_c, spec.mid_c, act=spec.act)
        self.conv2 = ConvBnAct(spec.mid_c, spec.mid_c, spec.kernel, spec.stride, act=spec.act)
        self.conv3 = ConvBnAct(spec.mid_c, spec.out_c)
        self.downsample = None if spec.skip else PoolConv(spec.in_c, spec.out_c, spec.stride)
        self.act = activation(spec.act, inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.downsample is None else self.downsample(x)
        return self.act(self.conv3(self.conv2(self.conv1(x))) + residual)


class FinalExpand(ConvBnAct):
    """MobileNetV3's last 1×1 expansion, followed by the global average pool."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec.in_c, spec.out_c, act=spec.act)

    @staticmethod
    def finish(x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=True)


class FeatureMix(ConvBnAct):
    """1×1 conv + activation on the pooled features (no BN), flattened for the classifier."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec.in_c, spec.out_c, bn=False, act=spec.act)

    @staticmethod
    def finish(x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(x, 1)


class Classifier(nn.Linear):
    """The linear classifier."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__(spec.in_c, spec.out_c)


class StaticNet(nn.Module):
    """One extracted sub-network: its layers, stem to classifier, applied in order."""

    def __init__(self, layers: Sequence[nn.Module]) -> None:
        super().__init__()
        self.layers = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


M = TypeVar("M", bound=nn.Module)


def with_memory_format(model: M, fmt: torch.memory_format) -> M:
    """``model`` with its 4-D weights in ``fmt`` (channels-last is faster for CPU convs; exporters
    and users get contiguous tensors)."""
    return model.to(memory_format=fmt)  # type: ignore[call-overload,no-any-return]


def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every conv→BN pair of ``model`` in place; returns it (see ``ConvBnAct.fold``)."""
    for m in model.modules():
        if isinstance(m, ConvBnAct):
            m.fold()
    return model
