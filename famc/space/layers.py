"""The one description of a network: an architecture unrolled into concrete per-layer specs.

``describe`` turns a preset and an ``Arch`` into the exact layers a static model has, each naming
the supernet slot that holds its weights. Everything else derives from that list: the elastic
supernet (one slot per position of the largest network, ``slots``), the extracted static model
(each slot's block extracts its static twin from a ``LayerSpec``), latency-table keys
(``LayerSpec.signature``) and the analytic cost (``KINDS``), so none of them can disagree about what
the network is.

FLOPs follow the MobileNet/OFA/AttentiveNAS convention: multiply-accumulates of every executed
convolution (squeeze-excite and shortcut 1×1 convs included) and linear layer; bias, BN,
activations, pooling and residual additions are excluded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from famc.space.arch import Arch
from famc.space.presets import (
    KernelTransform,
    LayerDef,
    Preset,
    StageSpec,
    make_divisible,
    width_choices,
    width_of,
)
from famc.space.space import SearchSpace

SE_REDUCTION = 4


def se_mid(channels: int) -> int:
    """Hidden width of the squeeze-excite bottleneck (OFA: channels // 4 rounded to 8)."""
    return make_divisible(channels // SE_REDUCTION)


def mid_channels(channels: int, expand: float) -> int:
    """Hidden width of a bottleneck (OFA's and AttentiveNAS's rounding, bit-exact)."""
    return make_divisible(round(channels * expand))


def conv_out(size: int, stride: int) -> int:
    """Spatial size after a 'same'-padded odd-kernel convolution."""
    return (size - 1) // stride + 1


@dataclass(frozen=True)
class LayerSpec:
    """One layer as deployed: enough to build it, time it, and count it."""

    kind: str
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
    module: str = ""  # the supernet slot holding its weights; not part of the signature

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
        return KINDS[self.kind].flops(self)

    def params(self) -> int:
        """Trainable parameters, BN affine included (running statistics are buffers)."""
        return KINDS[self.kind].params(self)

    def input_shape(self, batch: int) -> tuple[int, ...]:
        """The layer's input as the whole network feeds it (flattened for the classifier)."""
        if KINDS[self.kind].flat_input:
            return (batch, self.in_c)
        return (batch, self.in_c, self.in_hw, self.in_hw)


@dataclass(frozen=True)
class Slot:
    """One position of the supernet: the largest layer it holds and the kernels it can run."""

    layer: LayerSpec
    kernels: tuple[int, ...]
    transform: KernelTransform


# --- cost per block kind ----------------------------------------------------------------------
def _conv_flops(x: LayerSpec) -> int:
    return x.out_hw * x.out_hw * x.out_c * x.in_c * x.kernel**2


def _conv_bn_params(x: LayerSpec) -> int:
    return x.out_c * x.in_c * x.kernel**2 + 2 * x.out_c


def _mbconv_flops(x: LayerSpec) -> int:
    total = x.in_hw * x.in_hw * x.in_c * x.mid_c if x.expand else 0
    total += x.out_hw * x.out_hw * x.mid_c * x.kernel**2
    if x.se:
        total += 2 * x.mid_c * se_mid(x.mid_c)
    return total + x.out_hw * x.out_hw * x.mid_c * x.out_c


def _mbconv_params(x: LayerSpec) -> int:
    total = x.in_c * x.mid_c + 2 * x.mid_c if x.expand else 0
    total += x.mid_c * x.kernel**2 + 2 * x.mid_c
    if x.se:
        m = se_mid(x.mid_c)
        total += 2 * x.mid_c * m + m + x.mid_c
    return total + x.mid_c * x.out_c + 2 * x.out_c


def _projects(x: LayerSpec) -> bool:
    """AttentiveNAS's shortcut has a 1×1 conv (no BN) exactly when the width changes."""
    return x.in_c != x.out_c


def _mbconv_sc_flops(x: LayerSpec) -> int:
    shortcut = x.out_hw * x.out_hw * x.in_c * x.out_c if _projects(x) else 0
    return _mbconv_flops(x) + shortcut


def _mbconv_sc_params(x: LayerSpec) -> int:
    return _mbconv_params(x) + (x.in_c * x.out_c if _projects(x) else 0)


def _bottleneck_flops(x: LayerSpec) -> int:
    total = x.in_hw * x.in_hw * x.in_c * x.mid_c  # 1×1 reduce, before the strided conv
    total += x.out_hw * x.out_hw * x.mid_c * (x.mid_c * x.kernel**2 + x.out_c)
    return total + (0 if x.skip else x.out_hw * x.out_hw * x.in_c * x.out_c)  # downsample 1×1


def _bottleneck_params(x: LayerSpec) -> int:
    total = x.in_c * x.mid_c + x.mid_c * x.mid_c * x.kernel**2 + x.mid_c * x.out_c
    total += 4 * x.mid_c + 2 * x.out_c
    return total + (0 if x.skip else x.in_c * x.out_c + 2 * x.out_c)


def _free(_: LayerSpec) -> int:
    return 0


@dataclass(frozen=True)
class Kind:
    """What the analytic layer of a block kind costs, and how it connects to its neighbours."""

    flops: Callable[[LayerSpec], int]
    params: Callable[[LayerSpec], int]
    pools: bool = False  # ends with a global average pool: the next layer sees 1×1
    flat_input: bool = False  # consumes flattened features
    has_mid: bool = False  # a bottleneck block: its hidden width is mid_c
    mid_of_out: bool = False  # hidden width = expand × output width (ResNet), not input width


KINDS: dict[str, Kind] = {
    "conv": Kind(_conv_flops, _conv_bn_params),
    "max_pool": Kind(_free, _free),
    "mbconv": Kind(_mbconv_flops, _mbconv_params, has_mid=True),
    "mbconv_sc": Kind(_mbconv_sc_flops, _mbconv_sc_params, has_mid=True),
    "bottleneck": Kind(_bottleneck_flops, _bottleneck_params, has_mid=True, mid_of_out=True),
    "global_pool": Kind(_free, _free, pools=True),
    "final_expand": Kind(_conv_flops, _conv_bn_params, pools=True),
    "feature_mix": Kind(_conv_flops, lambda x: x.out_c * x.in_c),
    "classifier": Kind(
        lambda x: x.in_c * x.out_c, lambda x: x.in_c * x.out_c + x.out_c, flat_input=True
    ),  # fmt: skip
}


# --- unrolling -----------------------------------------------------------------------------
def output_widths(part: LayerDef | StageSpec, in_c: int) -> tuple[int, ...]:
    """The widths a fixed layer or stage can output after an input of ``in_c`` channels."""
    width = width_of(part)
    if width:
        return width_choices(width)
    return (in_c * part.ratio if isinstance(part, LayerDef) else in_c,)


def fixed_layer(d: LayerDef, hw: int, c: int, out_c: int) -> LayerSpec:
    """A fixed layer at input size ``hw`` and width ``c`` (an expand-1 block when it is a block)."""
    out_hw = conv_out(hw, d.stride)
    block = KINDS[d.kind].has_mid
    skip = block and d.stride == 1 and c == out_c
    return LayerSpec(d.kind, hw, c, out_hw, out_c, c if block else 0, d.kernel, d.stride, skip,
                     d.se, d.act, False, d.module)  # fmt: skip


def stage_layer(p: Preset, stage: StageSpec, index: int, hw: int, c: int, out_c: int, kernel: int,
                expand: float, module: str) -> LayerSpec:  # fmt: skip
    """Layer ``index`` of an elastic stage: residual whenever its shape allows, no expansion conv
    at expand ratio 1."""
    kind = KINDS[p.block_of(stage)]
    stride = stage.stride if index == 0 else 1
    mid = mid_channels(out_c if kind.mid_of_out else c, expand) if kind.has_mid else 0
    return LayerSpec(p.block_of(stage), hw, c, conv_out(hw, stride), out_c, mid, kernel, stride,
                     stride == 1 and c == out_c, stage.se, stage.act, expand != 1, module)  # fmt: skip


def next_input(layer: LayerSpec) -> tuple[int, int]:
    """Spatial size and width the layer after ``layer`` sees."""
    return (1 if KINDS[layer.kind].pools else layer.out_hw), layer.out_c


def stage_slots(p: Preset) -> list[tuple[str, ...]]:
    """Every stage's supernet slots, one per layer position (OFA's ``block_group_info``): a
    stage's layers are numbered in its module list after the fixed layers and stages before it."""
    used: dict[str, int] = {}
    out: list[tuple[str, ...]] = []
    for part in p.parts:
        if isinstance(part, LayerDef):
            group, _, index = part.module.partition(".")
            if index:
                used[group] = used.get(group, 0) + 1
            continue
        group, depth = part.module or p.stage_module, max(p.depths(part))
        first = used.get(group, 0)
        out.append(tuple(f"{group}.{first + i}" for i in range(depth)))
        used[group] = first + depth
    return out


def describe(space: SearchSpace, arch: Arch) -> list[LayerSpec]:
    """Unroll ``arch`` (validated) into its deployed layers, stem to classifier."""
    p = space.preset
    layers: list[LayerSpec] = []
    hw, c = arch.resolution, p.in_channels
    widths = iter(arch.w)
    stages = iter(zip(arch.ks, arch.e, stage_slots(p), strict=True))
    for part in p.parts:
        width = next(widths) if isinstance(width_of(part), tuple) else output_widths(part, c)[0]
        if isinstance(part, LayerDef):
            layers.append(fixed_layer(part, hw, c, width))
            hw, c = next_input(layers[-1])
            continue
        ks, es, modules = next(stages)
        for i, (k, e) in enumerate(zip(ks, es, strict=True)):
            layers.append(stage_layer(p, part, i, hw, c, width, k, e, modules[i]))
            hw, c = next_input(layers[-1])
    return layers


def elastic_modules(p: Preset) -> set[str]:
    """The supernet slots of the searchable stages (the stem and head are fixed)."""
    return {module for modules in stage_slots(p) for module in modules}


def slots(space: SearchSpace) -> list[Slot]:
    """Every supernet position with the largest layer it must hold (the largest architecture)."""
    p = space.preset
    elastic = elastic_modules(p)
    return [
        Slot(layer, p.kernel_choices if layer.module in elastic else (layer.kernel,),
             p.kernel_transform if layer.module in elastic else "crop")
        for layer in describe(space, space.largest())
    ]  # fmt: skip


def flops(space: SearchSpace, arch: Arch) -> int:
    """Multiply-accumulates of one forward pass of one image."""
    return sum(layer.flops() for layer in describe(space, arch))


def params(space: SearchSpace, arch: Arch) -> int:
    """Trainable parameters of the extracted static model."""
    return sum(layer.params() for layer in describe(space, arch))
