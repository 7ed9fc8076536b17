"""Build stage 2, search: prepared members → the REG-NAS family and the plain-NAS baseline.

The stage only needs a way to score architectures on the search split (``vectors``); how vectors
are computed and cached is the evaluation engine's business, handed in by the build.
"""

from __future__ import annotations

from dataclasses import dataclass

from famc.prepare import MemberPlan, Prepared
from famc.progress import Reporter
from famc.search.evolution import Constraint, EvolutionSettings, Prescreen
from famc.search.family import FoundMember, MemberSpec, Racing, SearchVectors, search_family
from famc.search.select import selection


@dataclass(frozen=True)
class Families:
    """The searched families, smallest member first; ``baseline`` is None when not asked for."""

    regnas: list[FoundMember]
    baseline: list[FoundMember] | None

    def describe(self) -> str:
        """How many candidates the searches scored, and how many a race stopped early."""
        traces = [m.trace for m in self.regnas + (self.baseline or [])]
        n = sum(len(t) for t in traces)
        stopped = sum(c.score.partial for t in traces for c in t)
        return f"{n} candidates scored, {stopped} stopped early by racing"


def constraint(p: Prepared, plan: MemberPlan) -> Constraint:
    """``plan``'s budget as a search constraint on its own cost model."""
    return Constraint(lambda a: plan.cost(p.space, a), plan.budget, plan.cost_model.describe,
                      plan.name)  # fmt: skip


def evolution_settings(p: Prepared) -> EvolutionSettings:
    """The config's search settings, with its predictor pre-screen and selection rule."""
    s = p.cfg.search
    screen = None
    if p.predictor is not None and s.prescreen is not None:
        predictor = p.predictor
        screen = Prescreen(lambda archs: predictor.predict(p.space, archs), s.prescreen.draws)
    return EvolutionSettings(s.population, s.generations, s.parent_ratio, s.mutation_ratio,
                             s.mutate_prob, s.max_tries, screen,
                             selection(s.selection, s.epsilon_pt))  # fmt: skip


def member_specs(p: Prepared) -> list[MemberSpec]:
    return [MemberSpec(plan.name, constraint(p, plan)) for plan in p.plans]


def search(p: Prepared, vectors: SearchVectors, reporter: Reporter) -> Families:
    """Search every member of both families (baseline: R0 each; REG-NAS: R0 then R2 + CAS). The
    baseline goes first: its members are the Top-1 paragons of their budgets, which the epsilon
    rule measures REG-NAS's members from."""
    s = p.cfg.search
    settings, specs = evolution_settings(p), member_specs(p)
    racing = None if s.racing is None else Racing(s.racing.images, s.racing.z)

    def run(regnas: bool, paragons: list[float] | None = None) -> list[FoundMember]:
        return search_family(p.space, specs, vectors, settings, regnas=regnas, lambda1=s.lambda1,
                             lambda2=s.lambda2, reference=s.reference, seed=s.seed,
                             reporter=reporter, racing=racing, paragons=paragons)  # fmt: skip

    baseline = run(False) if s.baseline == "r0" else None
    paragons = None if baseline is None else [m.best.score.top1 for m in baseline]
    return Families(run(True, paragons), baseline)
