"""Concrete layer shapes of an architecture, and its analytical cost.

``describe`` unrolls an ``Arch`` into the exact layers a static model has. Latency tables key their
entries by ``LayerSpec.signature()``, and FLOPs/params are summed from the same list, so the three
can never disagree about what the network is.

FLOPs follow the MobileNet/OFA convention: multiply-accumulates of convolutions and linear layers
(bias, BN, activations and pooling excluded).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from famc.space.arch import Arch
from famc.space.presets import make_divisible
from famc.space.space import SearchSpace

LayerKind = Literal["stem", "mbconv", "final_expand", "feature_mix", "classifier"]

SE_REDUCTION = 4


def se_mid(channels: int) -> int:
    """Hidden width of the squeeze-excite bottleneck (OFA: channels // 4 rounded to 8)."""
    return make_divisible(channels // SE_REDUCTION)


def mid_channels(in_channels: int, expand: int) -> int:
    """Hidden width of an inverted bottleneck (OFA's rounding, bit-exact)."""
    return make_divisible(round(in_channels * expand))


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel convolution."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer as deployed: enough to build it, time it, and count it."""

    kind: LayerKind
    in_hw: int
    in_c: int
    out_hw: int
    out_c: int
    mid_c: int
    kernel: int
    stride: int
    skip: bool
    se: bool
    act: str
    expand: bool  # inverted-bottleneck 1×1 present (False for the first block, expand ratio 1)

    def signature(self) -> str:
        """Stable text key: layer type, in H×W×C, out H×W×C, mid, kernel, stride, skip, SE, act."""
        return (
            f"{self.kind}:in{self.in_hw}x{self.in_hw}x{self.in_c}:out{self.out_hw}x{self.out_hw}x"
            f"{self.out_c}:mid{self.mid_c}:k{self.kernel}:s{self.stride}:skip{int(self.skip)}"
            f":se{int(self.se)}:{self.act}:exp{int(self.expand)}"
        )

    def to_dict(self) -> dict[str, object]:
        return asdict(self)

    def flops(self) -> int:
        hw_in, hw_out = self.in_hw * self.in_hw, self.out_hw * self.out_hw
        if self.kind == "stem":
            return hw_out * self.out_c * self.in_c * self.kernel**2
        if self.kind in ("final_expand", "feature_mix"):
            return hw_out * self.out_c * self.in_c
        if self.kind == "classifier":
            return self.in_c * self.out_c
        total = hw_in * self.in_c * self.mid_c if self.expand else 0
        total += hw_out * self.mid_c * self.kernel**2
        if self.se:
            total += 2 * self.mid_c * se_mid(self.mid_c)
        return total + hw_out * self.mid_c * self.out_c

    def params(self) -> int:
        """Trainable parameters, BN affine included (running statistics are buffers)."""
        if self.kind == "stem":
            return self.out_c * self.in_c * self.kernel**2 + 2 * self.out_c
        if self.kind == "final_expand":
            return self.out_c * self.in_c + 2 * self.out_c
        if self.kind == "feature_mix":
            return self.out_c * self.in_c
        if self.kind == "classifier":
            return self.in_c * self.out_c + self.out_c
        total = self.in_c * self.mid_c + 2 * self.mid_c if self.expand else 0
        total += self.mid_c * self.kernel**2 + 2 * self.mid_c
        if self.se:
            m = se_mid(self.mid_c)
            total += 2 * self.mid_c * m + m + self.mid_c
        return total + self.mid_c * self.out_c + 2 * self.out_c


def describe(space: SearchSpace, arch: Arch) -> list[LayerSpec]:
    """Unroll ``arch`` into its deployed layers, stem to classifier."""
    p = space.preset
    hw = arch.resolution
    out_hw = conv_out(hw, p.stem_stride)
    layers = [
        LayerSpec("stem", hw, p.in_channels, out_hw, p.stem_width, 0, 3, p.stem_stride, False,
                  False, "h_swish", False)
    ]  # fmt: skip
    hw, c = out_hw, p.stem_width
    layers.append(
        LayerSpec("mbconv", hw, c, hw, p.first_block_width, c, 3, 1, c == p.first_block_width,
                  False, "relu", False)
    )  # fmt: skip
    c = p.first_block_width
    for stage, ks, es in zip(p.stages, arch.ks, arch.e, strict=True):
        for i, (k, e) in enumerate(zip(ks, es, strict=True)):
            stride = stage.stride if i == 0 else 1
            out_hw = conv_out(hw, stride)
            skip = stride == 1 and c == stage.width
            layers.append(
                LayerSpec("mbconv", hw, c, out_hw, stage.width, mid_channels(c, e), k, stride,
                          skip, stage.se, stage.act, True)
            )  # fmt: skip
            hw, c = out_hw, stage.width
    layers.append(
        LayerSpec("final_expand", hw, c, hw, p.final_expand_width, 0, 1, 1, False, False,
                  "h_swish", False)
    )  # fmt: skip
    layers.append(
        LayerSpec("feature_mix", 1, p.final_expand_width, 1, p.last_channel, 0, 1, 1, False,
                  False, "h_swish", False)
    )  # fmt: skip
    layers.append(
        LayerSpec("classifier", 1, p.last_channel, 1, p.num_classes, 0, 1, 1, False, False,
                  "none", False)
    )  # fmt: skip
    return layers


def flops(space: SearchSpace, arch: Arch) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    return sum(layer.flops() for layer in describe(space, arch))


def params(space: SearchSpace, arch: Arch) -> int:
    """Trainable parameters of the extracted static model."""
    return sum(layer.params() for layer in describe(space, arch))
