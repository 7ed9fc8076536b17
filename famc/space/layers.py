"""The one description of a network: an architecture unrolled into concrete per-layer specs.

``describe`` turns a preset and an ``Arch`` into the exact layers a static model has, each naming
the supernet slot that holds its weights. Everything else derives from that list: the elastic
supernet (one slot per position of the largest network, ``slots``), the extracted static model
(each slot's block extracts its static twin from a ``LayerSpec``), latency-table keys
(``LayerSpec.signature``) and the analytic cost (``KINDS``), so none of them can disagree about what
the network is.

FLOPs follow the MobileNet/OFA convention: multiply-accumulates of convolutions and linear layers
(bias, BN, activations and pooling excluded).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass

from famc.space.arch import Arch
from famc.space.presets import KernelTransform, LayerDef, Preset, make_divisible
from famc.space.space import SearchSpace

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


@dataclass(frozen=True)
class Kind:
    """What the analytic layer of a block kind costs, and how it connects to its neighbours."""

    flops: Callable[[LayerSpec], int]
    params: Callable[[LayerSpec], int]
    pools: bool = False  # ends with a global average pool: the next layer sees 1×1
    flat_input: bool = False  # consumes flattened features
    has_mid: bool = False  # a depthwise-separable block: its hidden width is mid_c


KINDS: dict[str, Kind] = {
    "conv": Kind(_conv_flops, _conv_bn_params),
    "mbconv": Kind(_mbconv_flops, _mbconv_params, has_mid=True),
    "final_expand": Kind(_conv_flops, _conv_bn_params, pools=True),
    "feature_mix": Kind(_conv_flops, lambda x: x.out_c * x.in_c),
    "classifier": Kind(
        lambda x: x.in_c * x.out_c, lambda x: x.in_c * x.out_c + x.out_c, flat_input=True
    ),  # fmt: skip
}


# --- unrolling -----------------------------------------------------------------------------
def _fixed(d: LayerDef, hw: int, c: int) -> LayerSpec:
    """A fixed layer at input size ``hw`` and width ``c`` (an expand-1 block when it is a block)."""
    out_hw = conv_out(hw, d.stride)
    block = KINDS[d.kind].has_mid
    skip = block and d.stride == 1 and c == d.out_c
    return LayerSpec(d.kind, hw, c, out_hw, d.out_c, c if block else 0, d.kernel, d.stride, skip,
                     d.se, d.act, False, d.module)  # fmt: skip


def stage_module(p: Preset, stage: int, index: int) -> str:
    """The supernet slot of layer ``index`` of elastic ``stage`` (OFA's ``block_group_info``)."""
    first = sum(d.module.startswith(f"{p.stage_module}.") for d in p.stem)
    return f"{p.stage_module}.{first + stage * p.max_depth + index}"


def describe(space: SearchSpace, arch: Arch) -> list[LayerSpec]:
    """Unroll ``arch`` into its deployed layers, stem to classifier."""
    p = space.preset
    layers: list[LayerSpec] = []
    hw, c = arch.resolution, p.in_channels

    def add(layer: LayerSpec) -> tuple[int, int]:
        layers.append(layer)
        return (1 if KINDS[layer.kind].pools else layer.out_hw), layer.out_c

    for d in p.stem:
        hw, c = add(_fixed(d, hw, c))
    for s, (stage, ks, es) in enumerate(zip(p.stages, arch.ks, arch.e, strict=True)):
        for i, (k, e) in enumerate(zip(ks, es, strict=True)):
            stride = stage.stride if i == 0 else 1
            skip = stride == 1 and c == stage.width
            hw, c = add(
                LayerSpec(p.block, hw, c, conv_out(hw, stride), stage.width, mid_channels(c, e),
                          k, stride, skip, stage.se, stage.act, True, stage_module(p, s, i))
            )  # fmt: skip
    for d in p.head:
        hw, c = add(_fixed(d, hw, c))
    return layers


def elastic_modules(p: Preset) -> set[str]:
    """The supernet slots of the searchable stages (the stem and head are fixed)."""
    return {stage_module(p, s, i) for s in range(len(p.stages)) for i in range(p.max_depth)}


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
