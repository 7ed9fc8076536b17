"""Search-space presets: a supernet's whole architecture as plain data (timm's builder idea).

A preset lists its fixed layers (stem, first block, head: kind, width, kernel, stride, activation,
SE, and the supernet attribute that holds the weights) and its elastic stages; the elastic
supernet, the extracted static model, the checkpoint layout and the latency-timing graphs are all
derived from it (``famc.space.layers.describe``). The OFA presets reproduce ``OFAMobileNetV3``
exactly (widths are MobileNetV3-Large's times a multiplier, rounded with OFA's rule), so OFA
checkpoints load unchanged; ``fashion-mbv3`` is the same code sized for 28×28 grayscale images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KernelTransform = Literal["matrix", "crop"]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` without losing more than 10 % (TF/OFA rule, bit-exact)."""
    new_v = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * value:
        new_v += divisor
    return new_v


@dataclass(frozen=True)
class LayerDef:
    """One fixed (never searched) layer: its block kind, the supernet attribute holding its
    weights (OFA's parameter names) and its shape-defining settings."""

    kind: str  # a block kind of famc.space.layers.KINDS
    module: str  # supernet attribute path, e.g. "first_conv" or "blocks.0"
    out_c: int
    kernel: int = 1
    stride: int = 1
    act: str = "none"
    se: bool = False


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: its output width, the stride of its first layer, activation and SE."""

    width: int
    stride: int
    act: str
    se: bool


@dataclass(frozen=True)
class Preset:
    """Everything that fixes a supernet's parameter shapes, plus the elastic choices."""

    name: str
    in_channels: int
    num_classes: int
    stem: tuple[LayerDef, ...]  # before the elastic stages
    stages: tuple[StageSpec, ...]
    head: tuple[LayerDef, ...]  # after them, ending with the classifier
    kernel_choices: tuple[int, ...]
    expand_choices: tuple[int, ...]
    depth_choices: tuple[int, ...]
    resolutions: tuple[int, ...]
    kernel_transform: KernelTransform
    block: str = "mbconv"  # kind of every elastic layer
    stage_module: str = "blocks"  # elastic layers are stage_module.N, numbered after the stem's
    dropout: float = 0.1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    # Once-for-All's spellings of parameter names → famc's (regex, replacement), applied in order
    checkpoint_renames: tuple[tuple[str, str], ...] = ()

    @property
    def max_depth(self) -> int:
        return max(self.depth_choices)

    @property
    def last_channel(self) -> int:
        """Width of the classifier's input (where training applies dropout)."""
        return self.head[-2].out_c


# Once-for-All renames keys between its static and dynamic layers and wraps each block's conv in a
# residual block (``blocks.N.conv.``) that famc's blocks do not have.
OFA_MBV3_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^module\.", ""),
    (r"\.mobile_inverted_conv\.", ".conv."),
    (r"\.bn\.bn\.", ".bn."),
    (r"\.conv\.conv\.weight", ".conv.weight"),
    (r"\.linear\.linear\.", ".linear."),
    (r"^blocks\.(\d+)\.conv\.", r"blocks.\1."),
)


def mbv3_head(last_conv: int, feature_mix: int, num_classes: int) -> tuple[LayerDef, ...]:
    """MobileNetV3's head: 1×1 expand + BN + h-swish + global pool, 1×1 mix + h-swish, linear."""
    return (
        LayerDef("final_expand", "final_expand_layer", last_conv, act="h_swish"),
        LayerDef("feature_mix", "feature_mix_layer", feature_mix, act="h_swish"),
        LayerDef("classifier", "classifier", num_classes),
    )


def mbv3_stem(stem: int, first_block: int, stride: int = 2) -> tuple[LayerDef, ...]:
    """3×3 conv (stride 2) + BN + h-swish, then a fixed depthwise-separable block (expand 1)."""
    return (
        LayerDef("conv", "first_conv", stem, kernel=3, stride=stride, act="h_swish"),
        LayerDef("mbconv", "blocks.0", first_block, kernel=3, act="relu"),
    )


def _ofa_mbv3(name: str, width_mult: float) -> Preset:
    base = [16, 16, 24, 40, 80, 112, 160, 960, 1280]
    widths = [make_divisible(w * width_mult) for w in base[:-2]]
    strides = [2, 2, 2, 1, 2]
    acts = ["relu", "relu", "h_swish", "h_swish", "h_swish"]
    ses = [False, True, False, True, True]
    return Preset(
        name=name,
        in_channels=3,
        num_classes=1000,
        stem=mbv3_stem(widths[0], widths[1]),
        stages=tuple(
            StageSpec(w, s, a, se)
            for w, s, a, se in zip(widths[2:], strides, acts, ses, strict=True)
        ),
        head=mbv3_head(
            make_divisible(base[-2] * width_mult), make_divisible(base[-1] * width_mult), 1000
        ),
        kernel_choices=(3, 5, 7),
        expand_choices=(3, 4, 6),
        depth_choices=(2, 3, 4),
        resolutions=(160, 176, 192, 208, 224),
        kernel_transform="matrix",
        checkpoint_renames=OFA_MBV3_RENAMES,
    )


PRESETS: dict[str, Preset] = {
    "ofa-mbv3-w1.2": _ofa_mbv3("ofa-mbv3-w1.2", 1.2),
    "ofa-mbv3-w1.0": _ofa_mbv3("ofa-mbv3-w1.0", 1.0),
    "fashion-mbv3": Preset(
        name="fashion-mbv3",
        in_channels=1,
        num_classes=10,
        stem=mbv3_stem(16, 16),
        stages=(
            StageSpec(24, 1, "relu", False),
            StageSpec(32, 2, "relu", True),
            StageSpec(48, 1, "h_swish", False),
            StageSpec(64, 2, "h_swish", True),
        ),
        head=mbv3_head(192, 256, 10),
        kernel_choices=(3, 5, 7),
        expand_choices=(2, 3, 4),
        depth_choices=(1, 2, 3),
        resolutions=(24, 28),
        kernel_transform="crop",
        checkpoint_renames=OFA_MBV3_RENAMES,
    ),
}
