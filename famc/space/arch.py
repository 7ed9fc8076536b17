"""``Arch``: one sub-network of a supernet, as an immutable, hashable value.

Only *active* layers are stored (stage ``s`` holds ``d[s]`` layers), so two architectures are equal
exactly when they describe the same network; OFA's padded 20-entry lists are an import/export format
(``SearchSpace.from_ofa`` / ``SearchSpace.to_ofa``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict


@dataclass(frozen=True, order=True)
class Arch:
    """Per-stage kernel sizes and expand ratios of the active layers, plus the input resolution."""

    ks: tuple[tuple[int, ...], ...]
    e: tuple[tuple[int, ...], ...]
    resolution: int

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
        return {
            "resolution": self.resolution,
            "d": list(self.d),
            "ks": [list(k) for k in self.ks],
            "e": [list(x) for x in self.e],
        }

    def __str__(self) -> str:
        stages = " | ".join(
            ",".join(f"k{k}e{x}" for k, x in zip(ks, es, strict=True))
            for ks, es in zip(self.ks, self.e, strict=True)
        )
        return f"r{self.resolution} [{stages}]"


class ArchRecord(BaseModel):
    """The JSON form of an ``Arch`` (``Arch.to_dict()``), as every file famc writes holds it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    resolution: int
    d: list[int]
    ks: list[list[int]]
    e: list[list[int]]
