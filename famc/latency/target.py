"""Deployment targets: how a family member's cost is measured where it will run.

A target names the runtime, precision and export formats of a deployment, and per search space
either a latency table (cost = predicted ms) or an analytic ``budget`` metric (FLOPs / params).
The budget *values* live in the family config; a target only says what they are measured in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from famc.errors import FamcError
from famc.latency.table import (
    LatencyTable,
    Precision,
    Runtime,
    default_table_path,
    first_error,
    profile_command,
)
from famc.space import Arch, SearchSpace, flops, params

ExportFormat = Literal["onnx", "coreml", "tensorrt"]
Metric = Literal["latency_ms", "flops", "params"]


class Target(BaseModel):
    """One deployment target, as read from ``targets/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str
    runtime: Runtime
    threads: int = Field(ge=1)
    precision: Precision
    export: list[ExportFormat] = Field(min_length=1)
    tables: dict[str, str] = {}  # space preset -> table path, relative to the target file
    budget: Metric | None = None  # None: latency_ms where a table exists
    _source: Path = PrivateAttr(default=Path("<target>"))
    _loaded: dict[str, LatencyTable] = PrivateAttr(default_factory=dict)

    @field_validator("export")
    @classmethod
    def _unique(cls, v: list[ExportFormat]) -> list[ExportFormat]:
        if len(set(v)) != len(v):
            raise ValueError("export formats must not repeat")
        return v

    @property
    def source(self) -> Path:
        return self._source

    def metric(self, space: SearchSpace) -> Metric:
        """What budgets for ``space`` are measured in on this target."""
        if self.budget in ("flops", "params"):
            return self.budget
        if space.name not in self.tables:
            reason = "budget latency_ms needs" if self.budget else "it has neither a budget nor"
            out = default_table_path(space.name, self.runtime, self.threads)
            raise FamcError(
                f"{self._source}: target {self.name} cannot cost space {space.name}: {reason} a "
                f"latency table for it; measure one (`{self._command(space, out)}`) and add "
                f"`tables: {{{space.name}: <path>}}`, or set `budget: flops` or `budget: params`"
            )
        return "latency_ms"

    def table(self, space: SearchSpace) -> LatencyTable:
        """The latency table for ``space``, checked to be measured the way this target runs."""
        if space.name in self._loaded:
            return self._loaded[space.name]
        if self.metric(space) != "latency_ms":
            raise FamcError(
                f"{self._source}: target {self.name} costs {space.name} by {self.budget}, "
                "not by a latency table; remove `budget` to use its table"
            )
        path = (self._source.parent / self.tables[space.name]).resolve()
        if not path.is_file():
            raise FamcError(
                f"{self._source}: tables.{space.name}: no such file {path}; measure it with "
                f"`{self._command(space, path)}`"
            )
        table = LatencyTable.load(path)
        m = table.metadata
        for field, want in (("space", space.name), ("runtime", self.runtime),
                            ("threads", self.threads), ("precision", self.precision)):  # fmt: skip
            if getattr(m, field) != want:
                raise FamcError(
                    f"{self._source}: tables.{space.name}: {path} has {field}="
                    f"{getattr(m, field)!r} but target {self.name} needs {want!r}; point it at a "
                    f"matching table or fix the target's {field}"
                )
        self._loaded[space.name] = table
        return table

    def cost(self, arch: Arch, space: SearchSpace) -> float:
        """``arch``'s cost in this target's metric for ``space`` (ms, MACs or parameters)."""
        metric = self.metric(space)
        if metric == "flops":
            return float(flops(space, arch))
        if metric == "params":
            return float(params(space, arch))
        return self.table(space).predict(arch, space)

    def _command(self, space: SearchSpace, out: str | Path) -> str:
        return profile_command(space.name, self.runtime, self.threads, out)


def load_target(path: str | Path) -> Target:
    """Read and validate a target file; defects are one ``FamcError`` naming file and field."""
    path = Path(path)
    if not path.is_file():
        raise FamcError(f"{path}: no such target file; see targets/edge.yaml for the format")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError:
        raise FamcError(f"{path}: not valid YAML; fix the syntax") from None
    if not isinstance(data, dict):
        raise FamcError(f"{path}: a target is a mapping (name, runtime, threads, ...)")
    try:
        target = Target.model_validate(data)
    except ValidationError as exc:
        raise FamcError(
            f"{path}: invalid target: {first_error(exc)}; see targets/edge.yaml for the format"
        ) from None
    target._source = path
    return target
