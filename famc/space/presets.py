"""Search-space presets: the static skeleton of a MobileNetV3 supernet and its elastic choices.

One preset = one supernet shape. The OFA presets reproduce ``OFAMobileNetV3`` exactly (widths are the
MobileNetV3-Large base widths times a multiplier, rounded to multiples of 8 with OFA's rule), so OFA
checkpoints load unchanged; ``fashion-mbv3`` is the same code sized for 28×28 grayscale images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KernelTransform = Literal["matrix", "crop"]
Activation = Literal["relu", "h_swish"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` without losing more than 10 % (TF/OFA rule, bit-exact)."""
    new_v = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * value:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: its output width, the stride of its first layer, activation and SE."""

    width: int
    stride: int
    act: Activation
    se: bool


@dataclass(frozen=True)
class Preset:
    """Everything that fixes a supernet's parameter shapes, plus the elastic choices."""

    name: str
    in_channels: int
    num_classes: int
    stem_width: int
    stem_stride: int
    first_block_width: int
    stages: tuple[StageSpec, ...]
    final_expand_width: int
    last_channel: int
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    depth_choices: tuple[int, ...]
    resolutions: tuple[int, ...]
    kernel_transform: KernelTransform
    dropout: float = 0.1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)


def _ofa_mbv3(name: str, width_mult: float) -> Preset:
    base = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
    widths = [make_divisible(w * width_mult) for w in base[:-2]]
    strides = [2, 2, 2, 1, 2]
    acts: list[Activation] = ["relu", "relu", "h_swish", "h_swish", "h_swish"]
    ses = [False, True, False, True, True]
    return Preset(
        name=name,
        in_channels=3,
        num_classes=1000,
        stem_width=widths[0],
        stem_stride=2,
        first_block_width=widths[1],
        stages=tuple(
            StageSpec(w, s, a, se)
            for w, s, a, se in zip(widths[2:], strides, acts, ses, strict=True)
        ),
        final_expand_width=make_divisible(base[-2] * width_mult),
        last_channel=make_divisible(base[-1] * width_mult),
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        depth_choices=(2, 3, 4),
        resolutions=(160, 176, 192, 208, 224),
        kernel_transform="matrix",
    )


PRESETS: dict[str, Preset] = {
    "ofa-mbv3-w1.2": _ofa_mbv3("ofa-mbv3-w1.2", 1.2),
    "ofa-mbv3-w1.0": _ofa_mbv3("ofa-mbv3-w1.0", 1.0),
    "fashion-mbv3": Preset(
        name="fashion-mbv3",
        in_channels=1,
        num_classes=10,
        stem_width=16,
        stem_stride=2,
        first_block_width=16,
        stages=(
            StageSpec(24, 1, "relu", False),
            StageSpec(32, 2, "relu", True),
            StageSpec(48, 1, "h_swish", False),
            StageSpec(64, 2, "h_swish", True),
        ),
        final_expand_width=192,
        last_channel=256,
        kernel_choices=(3, 5, 7),
        expand_choices=(2, 3, 4),
        depth_choices=(1, 2, 3),
        resolutions=(24, 28),
        kernel_transform="crop",
    ),
}
