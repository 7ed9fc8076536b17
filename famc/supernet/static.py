"""Readable static MobileNetV3 models, built from ``LayerSpec`` lists (torchvision style).

These are what famc deploys and exports: plain ``nn.Conv2d``/``nn.BatchNorm2d``/``nn.Hardswish``
modules with concrete weight copies, no elastic logic, so ONNX/CoreML/TensorRT see an ordinary CNN.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from famc.space.layers import LayerSpec, se_mid


def activation(name: str) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "h_swish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def conv_bn_act(
    in_c: int, out_c: int, kernel: int, stride: int, groups: int, act: str | None
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_c, out_c, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_c),
    ]
    if act is not None:
        layers.append(activation(act))
    return nn.Sequential(*layers)


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


class MBConv(nn.Module):
    """Inverted residual: optional 1×1 expand, k×k depthwise (+SE), 1×1 linear projection."""

    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.skip = spec.skip
        self.expand = conv_bn_act(spec.in_c, spec.mid_c, 1, 1, 1, spec.act) if spec.expand else None
        self.depthwise = conv_bn_act(
            spec.mid_c, spec.mid_c, spec.kernel, spec.stride, spec.mid_c, spec.act
        )
        self.se = SqueezeExcite(spec.mid_c) if spec.se else None
        self.project = conv_bn_act(spec.mid_c, spec.out_c, 1, 1, 1, None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.expand(x) if self.expand is not None else x
        y = self.depthwise(y)
        if self.se is not None:
            y = self.se(y)
        y = self.project(y)
        return x + y if self.skip else y


class StaticMBV3(nn.Module):
    """One extracted sub-network: stem → MBConv blocks → 1×1 expand → pool → 1×1 mix → linear."""

    def __init__(self, layers: Sequence[LayerSpec]) -> None:
        super().__init__()
        stem, *blocks, final, mix, head = layers
        self.stem = conv_bn_act(stem.in_c, stem.out_c, stem.kernel, stem.stride, 1, stem.act)
        self.blocks = nn.Sequential(*(MBConv(b) for b in blocks))
        self.final_expand = conv_bn_act(final.in_c, final.out_c, 1, 1, 1, final.act)
        self.feature_mix = nn.Sequential(
            nn.Conv2d(mix.in_c, mix.out_c, 1, bias=False), activation(mix.act)
        )
        self.classifier = nn.Linear(head.in_c, head.out_c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.final_expand(self.blocks(self.stem(x)))
        x = self.feature_mix(x.mean((2, 3), keepdim=True))
        return self.classifier(torch.flatten(x, 1))


@torch.no_grad()
def fold_bn(model: nn.Module) -> nn.Module:
    """Fold every conv→BN pair into the conv (in place), for fast inference-only evaluation.

    Exact in eval mode up to float rounding; the deployed members keep their BN layers so that
    exporters and users see the ordinary architecture.
    """
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        layers = list(seq)
        for i in range(len(layers) - 1):
            conv, bn = layers[i], layers[i + 1]
            if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                assert bn.running_mean is not None and bn.running_var is not None
                scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                bias = bn.bias - bn.running_mean * scale
                if conv.bias is not None:
                    bias = bias + conv.bias * scale
                conv.bias = nn.Parameter(bias)
                seq[i + 1] = nn.Identity()
    return model
