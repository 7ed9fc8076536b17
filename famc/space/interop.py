"""The reference implementations' configuration formats, one codec per format.

A preset names the format its reference speaks (``Preset.config_format``); ``SearchSpace.from_ofa``
/ ``to_ofa`` and ``from_attentivenas`` / ``to_attentivenas`` convert through it, so a configuration
printed by OFA's ``sample_active_subnet()`` or listed in AttentiveNAS's YAML files becomes an
``Arch`` of the same network. Every decoded architecture is validated against the space.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from famc.errors import FamcError
from famc.space.arch import Arch, expand_ratio

if TYPE_CHECKING:
    from famc.space.space import SearchSpace

Config = Mapping[str, Any]


@dataclass(frozen=True)
class ConfigFormat:
    """``decode(space, cfg)`` (``cfg`` holds ``resolution``) and its inverse ``encode``."""

    family: str  # "ofa" or "attentivenas": the SearchSpace methods that speak it
    decode: Callable[[SearchSpace, Config], Arch]
    encode: Callable[[SearchSpace, Arch], dict[str, Any]]


def _lengths(space: SearchSpace, cfg: Config, want: Mapping[str, int]) -> None:
    got = {key: len(cfg.get(key) or ()) for key in want}
    if got != dict(want):
        needs = ", ".join(f"{n} {key}" for key, n in want.items())
        has = ", ".join(str(n) for n in got.values())
        raise FamcError(f"{space.name}: a configuration needs {needs} entries; got {has}")


# --- OFAMobileNetV3: ks/e per block slot (padded to the largest depth), d per stage ------------
def _from_ofa_mbv3(space: SearchSpace, cfg: Config) -> Arch:
    n, m = space.num_stages, space.preset.max_depth
    ks, es, ds = list(cfg["ks"]), list(cfg["e"]), list(cfg["d"])
    if len(ks) != n * m or len(es) != n * m or len(ds) != n:
        raise FamcError(
            f"OFA config for {space.name} needs {n * m} ks, {n * m} e and {n} d entries; got "
            f"{len(ks)}, {len(es)}, {len(ds)}"
        )
    arch = Arch(
        ks=tuple(tuple(int(k) for k in ks[s * m : s * m + ds[s]]) for s in range(n)),
        e=tuple(tuple(int(e) for e in es[s * m : s * m + ds[s]]) for s in range(n)),
        resolution=int(cfg["resolution"]),
    )
    return space.validate(arch)


def _pad(stage: Sequence[float], m: int) -> list[float]:
    """A stage's genes padded to ``m`` slots; inactive slots repeat the last (OFA ignores them)."""
    return list(stage) + [stage[-1]] * (m - len(stage))


def _to_ofa_mbv3(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    m = space.preset.max_depth
    ks = [int(k) for stage in arch.ks for k in _pad(stage, m)]
    es = [e for stage in arch.e for e in _pad(stage, m)]
    return {"ks": ks, "e": es, "d": list(arch.d)}


# --- OFAResNets: d = [stem residual kept iff 2, extra blocks per stage], e per block, w indices ---
def _resnet_layout(space: SearchSpace) -> tuple[list[int], list[int], int]:
    """Fewest and most bottlenecks of each stage after the stem residual stage, and OFA's
    largest ``d`` (the extra blocks a stage can add, and the value that keeps the stem residual)."""
    p = space.preset
    base = [min(p.depths(s)) for s in p.stages[1:]]
    most = [max(p.depths(s)) for s in p.stages[1:]]
    return base, most, most[0] - base[0]


def _from_ofa_resnet(space: SearchSpace, cfg: Config) -> Arch:
    base, most, extra = _resnet_layout(space)
    genes = space.preset.width_genes
    _lengths(space, cfg, {"d": len(base) + 1, "e": sum(most), "w": len(genes)})
    (kernel,) = space.preset.kernel_choices
    d, es = [int(x) for x in cfg["d"]], list(cfg["e"])
    stem = int(d[0] == extra)  # OFA skips the stem residual unless d[0] is the largest depth
    depths = [b + x for b, x in zip(base, d[1:], strict=True)]
    starts = [sum(most[:s]) for s in range(len(most))]
    try:
        w = tuple(choices[int(i)] for choices, i in zip(genes, cfg["w"], strict=True))
    except IndexError:
        raise FamcError(f"{space.name}: width indices {list(cfg['w'])} out of range") from None
    arch = Arch(
        ks=((kernel,) * stem, *((kernel,) * n for n in depths)),
        e=(
            (1,) * stem,
            *(tuple(map(expand_ratio, es[a : a + n])) for a, n in zip(starts, depths, strict=True)),
        ),
        resolution=int(cfg["resolution"]),
        w=w,
    )
    return space.validate(arch)


def _to_ofa_resnet(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    base, most, extra = _resnet_layout(space)
    d = [extra * arch.d[0]] + [n - b for n, b in zip(arch.d[1:], base, strict=True)]
    e = [x for stage, m in zip(arch.e[1:], most, strict=True) for x in _pad(stage, m)]
    w = [choices.index(c) for choices, c in zip(space.preset.width_genes, arch.w, strict=True)]
    return {"d": d, "e": e, "w": w}


# --- AttentiveNAS: one width per elastic position, one depth/kernel/expand per stage ------------
def _from_attentivenas(space: SearchSpace, cfg: Config) -> Arch:
    n = space.num_stages
    _lengths(space, cfg, {"width": len(space.preset.width_genes), "depth": n, "kernel_size": n,
                          "expand_ratio": n})  # fmt: skip
    d = [int(x) for x in cfg["depth"]]
    arch = Arch(
        ks=tuple((int(k),) * depth for k, depth in zip(cfg["kernel_size"], d, strict=True)),
        e=tuple(
            (expand_ratio(e),) * depth for e, depth in zip(cfg["expand_ratio"], d, strict=True)
        ),
        resolution=int(cfg["resolution"]),
        w=tuple(int(x) for x in cfg["width"]),
    )
    return space.validate(arch)


def _to_attentivenas(space: SearchSpace, arch: Arch) -> dict[str, Any]:
    return {
        "resolution": arch.resolution,
        "width": list(arch.w),
        "kernel_size": [stage[0] for stage in arch.ks],
        "expand_ratio": [stage[0] for stage in arch.e],
        "depth": list(arch.d),
    }


CONFIG_FORMATS: dict[str, ConfigFormat] = {
    "ofa-mbv3": ConfigFormat("ofa", _from_ofa_mbv3, _to_ofa_mbv3),
    "ofa-resnet": ConfigFormat("ofa", _from_ofa_resnet, _to_ofa_resnet),
    "attentivenas": ConfigFormat("attentivenas", _from_attentivenas, _to_attentivenas),
}
