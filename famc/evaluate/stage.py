"""Build stage 3, evaluate: every member of both families on the held-out test split.

Each member is scored once (one correctness vector); Top-1, the pairwise flip matrix and the
family-vs-baseline summary all derive from those vectors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from pydantic import BaseModel, ConfigDict

from famc.evaluate.cache import CachedEvaluation
from famc.metrics import Pair, pairwise, top1
from famc.prepare import MemberPlan, Prepared
from famc.search.family import FoundMember
from famc.search.stage import Families


@dataclass(frozen=True)
class MemberResult:
    """One searched member with its test-split correctness vector."""

    plan: MemberPlan
    found: FoundMember
    test: torch.Tensor

    @property
    def top1(self) -> float:
        return round(top1(self.test), 3)


class FamilySummary(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mean_top1: float
    mean_pairwise_nfr: float


@dataclass(frozen=True)
class FamilyResult:
    members: list[MemberResult]
    pairwise: list[Pair]

    def summary(self) -> FamilySummary:
        pairs = self.pairwise
        return FamilySummary(
            mean_top1=round(sum(m.top1 for m in self.members) / len(self.members), 3),
            mean_pairwise_nfr=round(sum(x.nfr for x in pairs) / len(pairs), 4) if pairs else 0.0,
        )


@dataclass(frozen=True)
class Evaluated:
    family: FamilyResult
    baseline: FamilyResult | None

    def nfr_reduction_pct(self) -> float | None:
        """How much lower the family's mean pairwise NFR is than the baseline's (%)."""
        if self.baseline is None:
            return None
        f, b = self.family.summary(), self.baseline.summary()
        if b.mean_pairwise_nfr <= 0:
            return None
        return round(100 * (1 - f.mean_pairwise_nfr / b.mean_pairwise_nfr), 2)

    def top1_cost(self) -> float | None:
        """Mean Top-1 the family gives up against the baseline (points)."""
        if self.baseline is None:
            return None
        return round(self.baseline.summary().mean_top1 - self.family.summary().mean_top1, 3)


def family_result(members: Sequence[MemberResult]) -> FamilyResult:
    """Members (smallest first) with the flip metrics of every pair of their test vectors."""
    return FamilyResult(list(members), pairwise([(m.found.name, m.test) for m in members]))


def _family(plans: Sequence[MemberPlan], found: Sequence[FoundMember],
            correct: Callable[[FoundMember], torch.Tensor]) -> FamilyResult:  # fmt: skip
    return family_result(
        [MemberResult(plan, m, correct(m)) for plan, m in zip(plans, found, strict=True)]
    )


def evaluate(p: Prepared, families: Families, ev: CachedEvaluation,
             log: Callable[[str], None]) -> Evaluated:  # fmt: skip
    """Test-split vectors of every member, with the flip metrics of every pair."""
    log(f"evaluating {len(families.regnas)} members on {len(p.data.test)} test images")

    # every member of both families in one call: one prefix tree, shared layers run once
    archs = [m.best.arch for m in families.regnas + (families.baseline or [])]
    vectors = dict(zip(archs, ev.correct_many(archs, "test"), strict=True))

    def test(m: FoundMember) -> torch.Tensor:
        return vectors[m.best.arch]

    baseline = None if families.baseline is None else _family(p.plans, families.baseline, test)
    return Evaluated(_family(p.plans, families.regnas, test), baseline)
