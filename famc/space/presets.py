"""Search-space presets: a supernet's whole architecture as plain data (timm's builder idea).

A preset lists its fixed layers (kind, width, kernel, stride, activation, SE, and the supernet
attribute that holds the weights) and its elastic stages, in network order; the elastic supernet,
the extracted static model, the checkpoint layout and the latency-timing graphs are all derived from
it (``famc.space.layers.describe``). A width is a fixed int, a tuple of elastic choices (one gene
of ``Arch.w``) or follows the layer's input. The OFA presets reproduce ``OFAMobileNetV3`` and
``OFAResNets`` exactly, so OFA checkpoints load unchanged; ``attentivenas`` is the AttentiveNAS
space; the ``fashion-*`` presets are the same code sized for 28×28 grayscale images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

KernelTransform = Literal["matrix", "crop"]
#: An output width: fixed, or the elastic choices in the reference's order (a repeated width, as
#: in OFA-ResNet's width-multiplier list, is one choice).
Width = int | tuple[int, ...]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to a multiple of ``divisor`` without losing more than 10 % (TF/OFA rule, bit-exact)."""
    new_v = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * value:
        new_v += divisor
    return new_v


def width_choices(width: Width) -> tuple[int, ...]:
    """The distinct widths a position can take, ascending."""
    return tuple(sorted(set(width))) if isinstance(width, tuple) else (width,)


@dataclass(frozen=True)
class LayerDef:
    """One fixed (never skipped) layer: its block kind, the supernet attribute holding its
    weights (the reference's parameter names) and its shape-defining settings."""

    kind: str  # a block kind of famc.space.layers.KINDS
    module: str  # supernet attribute path, e.g. "first_conv" or "blocks.0"
    out_c: Width = 0  # 0: ``ratio`` × the input width (pools; AttentiveNAS's head)
    kernel: int = 1
    stride: int = 1
    act: str = "none"
    se: bool = False
    ratio: int = 1


@dataclass(frozen=True)
class StageSpec:
    """One elastic stage: its output width, the stride of its first layer, activation and SE.

    Choices left empty are the preset's; ``before`` are fixed layers between the previous stage
    and this one (OFA-ResNet's stem conv and max-pool follow its skippable stem residual stage).
    """

    width: Width  # 0: the stage keeps its input width (OFA-ResNet's stem residual conv)
    stride: int
    act: str
    se: bool
    depths: tuple[int, ...] = ()
    expands: tuple[float, ...] = ()
    block: str = ""
    module: str = ""  # supernet ModuleList holding its layers
    before: tuple[LayerDef, ...] = ()


def width_of(part: LayerDef | StageSpec) -> Width:
    """A fixed layer's or a stage's output width setting."""
    return part.out_c if isinstance(part, LayerDef) else part.width


@dataclass(frozen=True)
class Preset:
    """Everything that fixes a supernet's parameter shapes, plus the elastic choices."""

    name: str
    in_channels: int
    num_classes: int
    stem: tuple[LayerDef, ...]  # before the elastic stages
    stages: tuple[StageSpec, ...]
    head: tuple[LayerDef, ...]  # after them, ending with the classifier
    kernel_choices: tuple[int, ...]  # of every elastic layer
    resolutions: tuple[int, ...]
    kernel_transform: KernelTransform
    expand_choices: tuple[float, ...] = ()  # a stage's unless it has its own
    depth_choices: tuple[int, ...] = ()
    block: str = "mbconv"  # kind of every elastic layer whose stage names none
    stage_module: str = "blocks"  # elastic layers are stage_module.N, numbered after the stem's
    # "stage": one kernel and one expand ratio per stage (AttentiveNAS), not one per layer (OFA)
    genes_per: Literal["layer", "stage"] = "layer"
    config_format: str = "ofa-mbv3"  # the reference's configuration format (space.interop)
    dropout: float = 0.1
    bn_momentum: float = 0.1
    bn_eps: float = 1e-5
    # the reference's spellings of parameter names → famc's (regex, replacement), applied in order
    checkpoint_renames: tuple[tuple[str, str], ...] = ()
    # reference keys with no famc counterpart (regexes), skipped when loading a checkpoint
    checkpoint_skip: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for i, stage in enumerate(self.stages):
            if not (self.depths(stage) and self.expands(stage)):
                raise ValueError(f"preset {self.name}: stage {i} has no depth or expand choices")

    @property
    def parts(self) -> tuple[LayerDef | StageSpec, ...]:
        """The network in order: fixed layers and elastic stages."""
        body: list[LayerDef | StageSpec] = []
        for stage in self.stages:
            body += [*stage.before, stage]
        return (*self.stem, *body, *self.head)

    @property
    def width_genes(self) -> tuple[tuple[int, ...], ...]:
        """Each elastic width's choices in the reference's order (one ``Arch.w`` gene each), in
        network order."""
        return tuple(w for w in map(width_of, self.parts) if isinstance(w, tuple))

    def depths(self, stage: StageSpec) -> tuple[int, ...]:
        return stage.depths or self.depth_choices

    def expands(self, stage: StageSpec) -> tuple[float, ...]:
        return stage.expands or self.expand_choices

    def block_of(self, stage: StageSpec) -> str:
        return stage.block or self.block

    @property
    def max_depth(self) -> int:
        return max(max(self.depths(s)) for s in self.stages)


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


# OFA-ResNet: the same renames minus MobileNetV3's block wrapper; the stem residual conv sits in a
# ResidualBlock (``input_stem.1.conv.``) where famc's residual conv unit has no extra level.
OFA_RESNET_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^module\.", ""),
    (r"\.bn\.bn\.", ".bn."),
    (r"\.conv\.conv\.weight$", ".conv.weight"),
    (r"\.linear\.linear\.", ".linear."),
    (r"^input_stem\.1\.conv\.(conv|bn)\.", r"input_stem.1.\1."),
)


def _ofa_resnet(name: str, in_channels: int, num_classes: int, *, stem_stride: int,
                stem_width: int, stage_widths: tuple[int, ...], base_depths: tuple[int, ...],
                strides: tuple[int, ...], width_mults: tuple[float, ...],
                expands: tuple[float, ...], resolutions: tuple[int, ...]) -> Preset:  # fmt: skip
    """Once-for-All's ``OFAResNets``: widths are base × each multiplier (OFA's rounding), stage s
    runs ``base_depths[s]`` + {0, 1, 2} bottlenecks, and the stem residual conv is skippable
    (a stage of depth 0 or 1 that keeps its input width)."""

    def widths(base: int) -> tuple[int, ...]:
        return tuple(make_divisible(base * m) for m in width_mults)

    stem2 = widths(stem_width)
    entry = (  # after the skippable stem residual conv, before the first bottleneck
        LayerDef("conv", "input_stem.2", stem2, kernel=3, act="relu"),
        LayerDef("max_pool", "max_pooling", kernel=3, stride=2),
    )
    bottlenecks = tuple(
        StageSpec(widths(w), s, "relu", False, depths=(d, d + 1, d + 2),
                  before=entry if i == 0 else ())
        for i, (w, d, s) in enumerate(zip(stage_widths, base_depths, strides, strict=True))
    )  # fmt: skip
    return Preset(
        name=name,
        in_channels=in_channels,
        num_classes=num_classes,
        stem=(
            LayerDef(
                "conv",
                "input_stem.0",
                tuple(make_divisible(c // 2) for c in stem2),
                kernel=3,
                stride=stem_stride,
                act="relu",
            ),
        ),  # fmt: skip
        stages=(
            StageSpec(
                0, 1, "relu", False, depths=(0, 1), expands=(1,), block="conv", module="input_stem"
            ),
            *bottlenecks,
        ),  # fmt: skip
        head=(
            LayerDef("global_pool", "global_avg_pool"),
            LayerDef("classifier", "classifier", num_classes),
        ),
        kernel_choices=(3,),
        expand_choices=expands,
        resolutions=resolutions,
        kernel_transform="crop",
        block="bottleneck",
        config_format="ofa-resnet",
        dropout=0.0,
        checkpoint_renames=OFA_RESNET_RENAMES,
    )


# AttentiveNAS's dynamic layers add a ``.mobile_inverted_conv.`` level, double ``.bn.bn.`` /
# ``.conv.conv.`` and a ``last_conv`` container; its BNs carry unused ``bn_tracking`` buffers.
ATTENTIVENAS_RENAMES: tuple[tuple[str, str], ...] = (
    (r"^module\.", ""),
    (r"\.mobile_inverted_conv\.", "."),
    (r"\.bn\.bn\.", ".bn."),
    (r"\.conv\.conv\.weight$", ".conv.weight"),
    (r"\.linear\.linear\.", ".linear."),
    (r"^last_conv\.", ""),
)


def _attentivenas(name: str, in_channels: int, num_classes: int, *, stem: tuple[int, ...],
                  stages: tuple[StageSpec, ...], feature_mix: tuple[int, ...],
                  resolutions: tuple[int, ...]) -> Preset:  # fmt: skip
    """AttentiveNAS (= AlphaNet): a FBNetV3-like space where width, depth, kernel and expand
    ratio are chosen per stage, every block is residual, swish everywhere, MobileNetV3's head
    with a 6× expansion, and smaller kernels are centre crops of the largest."""
    return Preset(
        name=name,
        in_channels=in_channels,
        num_classes=num_classes,
        stem=(LayerDef("conv", "first_conv", stem, kernel=3, stride=2, act="swish"),),
        stages=stages,
        head=(
            LayerDef("final_expand", "final_expand_layer", act="swish", ratio=6),
            LayerDef("feature_mix", "feature_mix_layer", feature_mix, act="swish"),
            LayerDef("classifier", "classifier", num_classes),
        ),
        kernel_choices=(3, 5),
        resolutions=resolutions,
        kernel_transform="crop",
        block="mbconv_sc",
        genes_per="stage",
        config_format="attentivenas",
        dropout=0.2,
        checkpoint_renames=ATTENTIVENAS_RENAMES,
        checkpoint_skip=(r"\.bn_tracking\.",),
    )


def _an_stage(widths: tuple[int, ...], depths: tuple[int, ...], expands: tuple[int, ...],
              stride: int, se: bool) -> StageSpec:  # fmt: skip
    return StageSpec(widths, stride, "swish", se, depths=depths, expands=expands)


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
    "ofa-resnet50": _ofa_resnet(
        "ofa-resnet50",
        3,
        1000,
        stem_stride=2,
        stem_width=64,
        stage_widths=(256, 512, 1024, 2048),
        base_depths=(2, 2, 4, 2),
        strides=(1, 2, 2, 2),
        width_mults=(0.65, 0.8, 1.0),
        expands=(0.2, 0.25, 0.35),
        resolutions=(128, 144, 160, 176, 192, 208, 224),
    ),  # fmt: skip
    "attentivenas": _attentivenas(
        "attentivenas",
        3,
        1000,
        stem=(16, 24),
        stages=(
            _an_stage((16, 24), (1, 2), (1,), 1, False),
            _an_stage((24, 32), (3, 4, 5), (4, 5, 6), 2, False),
            _an_stage((32, 40), (3, 4, 5, 6), (4, 5, 6), 2, True),
            _an_stage((64, 72), (3, 4, 5, 6), (4, 5, 6), 2, False),
            _an_stage((112, 120, 128), (3, 4, 5, 6, 7, 8), (4, 5, 6), 1, True),
            _an_stage((192, 200, 208, 216), (3, 4, 5, 6, 7, 8), (6,), 2, True),
            _an_stage((216, 224), (1, 2), (6,), 1, True),
        ),
        feature_mix=(1792, 1984),
        resolutions=(192, 224, 256, 288),
    ),  # fmt: skip
    "fashion-resnet": _ofa_resnet(
        "fashion-resnet",
        1,
        10,
        stem_stride=1,
        stem_width=24,
        stage_widths=(48, 96, 192),
        base_depths=(1, 2, 1),
        strides=(1, 2, 2),
        width_mults=(0.65, 0.8, 1.0),
        expands=(0.2, 0.25, 0.35),
        resolutions=(24, 28),
    ),  # fmt: skip
    "fashion-attentivenas": _attentivenas(
        "fashion-attentivenas",
        1,
        10,
        stem=(16, 24),
        stages=(
            _an_stage((16, 24), (1, 2), (1,), 1, False),
            _an_stage((24, 32), (1, 2, 3), (4, 5, 6), 2, False),
            _an_stage((32, 40), (1, 2, 3), (4, 5, 6), 1, True),
            _an_stage((48, 56), (1, 2, 3), (4, 5, 6), 2, False),
            _an_stage((56, 64, 72), (1, 2, 3), (6,), 1, True),
        ),
        feature_mix=(160, 192),
        resolutions=(24, 28),
    ),  # fmt: skip
}
