"""Cost models: what a member's budget is measured in, as one registry.

``latency_ms`` is a latency table's prediction for the member's target; ``mflops`` and ``mparams``
are analytic. The family config's ``budget`` keys, a target's ``budget`` setting, the search
constraint and the report's units all come from ``COST_MODELS``, so they share one vocabulary.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from famc.space import Arch, SearchSpace, flops, params

if TYPE_CHECKING:
    from famc.latency.table import LatencyTable


@dataclass(frozen=True)
class CostModel:
    """One way to cost an architecture: ``cost(space, arch, table)`` in ``unit``."""

    name: str
    unit: str  # for messages: "0.07 ms"
    label: str  # for chart axes
    needs_table: bool
    cost: Callable[[SearchSpace, Arch, LatencyTable | None], float]

    def describe(self, value: float) -> str:
        return f"{value:.4g} {self.unit}"


def _latency(space: SearchSpace, arch: Arch, table: LatencyTable | None) -> float:
    if table is None:
        raise ValueError("latency_ms needs a latency table")
    return table.predict(arch, space)


COST_MODELS: dict[str, CostModel] = {
    "latency_ms": CostModel("latency_ms", "ms", "predicted latency (ms)", True, _latency),
    "mflops": CostModel("mflops", "MFLOPs", "MFLOPs", False,
                        lambda space, arch, _: flops(space, arch) / 1e6),
    "mparams": CostModel("mparams", "M params", "params (M)", False,
                         lambda space, arch, _: params(space, arch) / 1e6),
}  # fmt: skip
