"""``Arch``: one sub-network of a supernet, as an immutable, hashable value.

Only *active* layers are stored (stage ``s`` holds ``d[s]`` layers), so two architectures are equal
exactly when they describe the same network; the reference implementations' padded lists are
import/export formats (``famc.space.interop``). Elastic widths are output channel counts, one per
elastic position of the preset (``Preset.width_genes``); spaces without any keep ``w`` empty and
their JSON form has no ``w`` key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer


def expand_ratio(value: Any) -> float:
    """An expand ratio as read from a file: an int when integral, so ``4`` and ``4.0`` are one
    gene and write alike (OFA-ResNet's ratios are fractions)."""
    x = float(value)
    return int(x) if x.is_integer() else x


@dataclass(frozen=True, order=True)
class Arch:
    """Per-stage kernel sizes and expand ratios of the active layers, the input resolution and
    the elastic output widths."""

    ks: tuple[tuple[int, ...], ...]
    e: tuple[tuple[float, ...], ...]
    resolution: int
    w: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if len(self.ks) != len(self.e) or any(
            len(k) != len(x) for k, x in zip(self.ks, self.e, strict=True)
        ):
            raise ValueError("Arch: ks and e must have the same per-stage lengths")

    @property
    def d(self) -> tuple[int, ...]:
        """Depth of every stage."""
        return tuple(len(k) for k in self.ks)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form famc writes everywhere: depth per stage, then per-stage lists."""
        out = {
            "resolution": self.resolution,
            "d": list(self.d),
            "ks": [list(k) for k in self.ks],
            "e": [list(x) for x in self.e],
        }
        return out | {"w": list(self.w)} if self.w else out

    def __str__(self) -> str:
        stages = " | ".join(
            ",".join(f"k{k}e{x}" for k, x in zip(ks, es, strict=True))
            for ks, es in zip(self.ks, self.e, strict=True)
        )
        widths = f" w{list(self.w)}" if self.w else ""
        return f"r{self.resolution} [{stages}]{widths}"


class ArchRecord(BaseModel):
    """The JSON form of an ``Arch`` (``Arch.to_dict()``), as every file famc writes holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int
    d: list[int]
    ks: list[list[int]]
    e: list[list[int | float]]
    w: list[int] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _omit_fixed_widths(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """``w`` only where the space has elastic widths, as in ``Arch.to_dict()``."""
        out: dict[str, Any] = handler(self)
        if not out.get("w"):
            out.pop("w", None)
        return out
