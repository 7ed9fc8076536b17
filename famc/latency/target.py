"""Deployment targets: how a family member's cost is measured where it will run.

A target names the runtime, precision and export formats of a deployment, and per search space
either a latency table (cost = predicted ms) or an analytic ``budget`` cost model (MFLOPs / M
params). The budget *values* live in the family config; a target only says what they are measured in.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PrivateAttr, field_validator

from famc.cost import COST_MODELS, CostModel
from famc.errors import FamcError
from famc.export.formats import FORMATS
from famc.export.parity import ParityPolicy
from famc.io import known, load_yaml
from famc.latency.runtimes import RUNTIMES
from famc.latency.table import LatencyTable, Precision, default_table_path, profile_command
from famc.space import Arch, SearchSpace

FormatName = Annotated[str, AfterValidator(known(FORMATS, "export format"))]


class Target(BaseModel):
    """One deployment target, as read from ``targets/<name>.yaml``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    description: str
    runtime: Annotated[str, AfterValidator(known(RUNTIMES, "runtime"))]
    threads: int = Field(ge=1)
    precision: Precision
    export: list[FormatName] = Field(min_length=1)
    tables: dict[str, str] = {}  # space preset -> table path, relative to the target file
    # format -> artifact precision -> how its parity is judged (default: ParityPolicy.default)
    parity: dict[FormatName, dict[Precision, ParityPolicy]] = {}
    # a COST_MODELS name; None: latency_ms where a table exists
    budget: Annotated[str, AfterValidator(known(COST_MODELS, "cost model"))] | None = None
    _source: Path = PrivateAttr(default=Path("<target>"))
    _loaded: dict[str, LatencyTable] = PrivateAttr(default_factory=dict)

    @field_validator("export")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("export formats must not repeat")
        return v

    @property
    def source(self) -> Path:
        return self._source

    def parity_policy(self, fmt: str, precision: str) -> ParityPolicy:
        """How an artifact of ``fmt`` at ``precision`` is judged on this target."""
        for at, policy in self.parity.get(fmt, {}).items():
            if at == precision:
                return policy
        return ParityPolicy.default(precision)

    def cost_model(self, space: SearchSpace) -> CostModel:
        """What budgets for ``space`` are measured in on this target."""
        if self.budget is not None and not COST_MODELS[self.budget].needs_table:
            return COST_MODELS[self.budget]
        if space.name not in self.tables:
            reason = "budget latency_ms needs" if self.budget else "it has neither a budget nor"
            out = default_table_path(space.name, self.runtime, self.threads)
            analytic = " or ".join(f"`budget: {n}`" for n, m in COST_MODELS.items()
                                   if not m.needs_table)  # fmt: skip
            raise FamcError(
                f"{self._source}: target {self.name} cannot cost space {space.name}: {reason} a "
                f"latency table for it; measure one (`{self._command(space, out)}`) and add "
                f"`tables: {{{space.name}: <path>}}`, or set {analytic}"
            )
        return COST_MODELS["latency_ms"]

    def table(self, space: SearchSpace) -> LatencyTable:
        """The latency table for ``space``, checked to be measured the way this target runs."""
        if space.name in self._loaded:
            return self._loaded[space.name]
        if self.cost_model(space).name != "latency_ms":
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
        """``arch``'s cost under this target's cost model for ``space``."""
        model = self.cost_model(space)
        return model.cost(space, arch, self.table(space) if model.needs_table else None)

    def _command(self, space: SearchSpace, out: str | Path) -> str:
        return profile_command(space.name, self.runtime, self.threads, out)


def load_target(path: str | Path) -> Target:
    """Read and validate a target file; defects are one ``FamcError`` line naming file and field."""
    target = load_yaml(Target, path, "target", "see targets/edge.yaml for the format")
    target._source = Path(path)
    return target
