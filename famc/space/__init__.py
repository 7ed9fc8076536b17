"""Search spaces: presets, the ``Arch`` value, sampling/CAS, and per-layer cost."""

from __future__ import annotations

from famc.errors import FamcError
from famc.space.arch import Arch, ArchRecord
from famc.space.layers import KINDS, LayerSpec, Slot, describe, flops, params, slots
from famc.space.presets import PRESETS, LayerDef, Preset, StageSpec, make_divisible
from famc.space.space import SearchSpace

__all__ = [
    "KINDS",
    "PRESETS",
    "Arch",
    "ArchRecord",
    "LayerDef",
    "LayerSpec",
    "Preset",
    "SearchSpace",
    "Slot",
    "StageSpec",
    "describe",
    "flops",
    "get_space",
    "make_divisible",
    "params",
    "slots",
]


def get_space(name: str) -> SearchSpace:
    """The search space of a named preset."""
    if name not in PRESETS:
        raise FamcError(f"unknown space preset {name!r}; known presets: {', '.join(PRESETS)}")
    return SearchSpace(PRESETS[name])
