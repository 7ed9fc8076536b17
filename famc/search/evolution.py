"""Constrained evolutionary architecture search (OFA's finder; REG-NAS settings by default).

Each generation keeps the top ``parent_ratio`` of the population as parents (ranked by
``settings.selection``, famc.search.select; by reward unless told otherwise) and refills it with
mutants (``mutation_ratio``) and uniform crossovers of two parents. A generation's new candidates
are drawn first and scored in one call, so an evaluation backend may score them in parallel; the
weakest parent is handed to the fitness as the bar a racing fitness may stop candidates against.
Candidates must satisfy the compute constraint (rejection sampling with a retry cap, never an
endless loop) and, under CAS, contain every reference architecture. With a ``Prescreen`` (an
accuracy predictor) each new candidate is the best-predicted of several admissible draws, so fewer
real evaluations go to poor candidates.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Any

from famc.errors import FamcError
from famc.progress import Reporter
from famc.search.select import RewardSelection, Selection
from famc.space.arch import Arch
from famc.space.space import SearchSpace


@dataclass(frozen=True)
class Prescreen:
    """Keep the best of ``draws`` admissible draws by ``predict`` (predicted Top-1, higher is
    better) as the next candidate."""

    predict: Callable[[Sequence[Arch]], list[float]]
    draws: int


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 100
    generations: int = 20
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    max_tries: int = 2000  # rejection-sampling attempts per new candidate
    prescreen: Prescreen | None = None
    selection: Selection = RewardSelection()  # parents and the result (famc.search.select)

    @property
    def parents(self) -> int:
        return max(2, round(self.parent_ratio * self.population))


@dataclass(frozen=True)
class Score:
    top1: float
    nfr: float | None  # against the reference(s); None without references
    reward: float
    images: int  # search images the score rests on
    partial: bool = False  # stopped by racing: never a parent, never chosen


Fitness = Callable[[Sequence[Arch], "Candidate | None"], list[Score]]


@dataclass(frozen=True)
class Candidate:
    arch: Arch
    cost: float
    score: Score
    generation: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch.to_dict(),
            "cost": round(self.cost, 6),
            "top1": round(self.score.top1, 4),
            "nfr": None if self.score.nfr is None else round(self.score.nfr, 4),
            "reward": round(self.score.reward, 4),
            "images": self.score.images,
            "partial": self.score.partial,
            "generation": self.generation,
        }


@dataclass(frozen=True)
class Constraint:
    """``cost(arch) <= budget``; ``describe`` renders a cost for messages (e.g. "0.52 ms")."""

    cost: Callable[[Arch], float]
    budget: float
    describe: Callable[[float], str]
    label: str  # whose budget, for messages: "edge"


def cheapest(space: SearchSpace, refs: Sequence[Arch]) -> Arch:
    """The least architecture that contains every reference (at the lowest resolution)."""
    if not refs:
        return space.smallest()
    return replace(refs[-1], resolution=min(space.preset.resolutions))


@dataclass
class _Evolution:
    """One constrained evolutionary search: sampling, mutation and crossover that respect the
    budget and CAS, and the trace of every architecture evaluated."""

    space: SearchSpace
    fitness: Fitness
    constraint: Constraint
    refs: Sequence[Arch]
    settings: EvolutionSettings
    rng: random.Random
    title: str
    trace: list[Candidate] = field(default_factory=list)
    seen: dict[Arch, Candidate] = field(default_factory=dict)

    @property
    def ref(self) -> Arch | None:
        return self.refs[-1] if self.refs else None

    def check_floor(self) -> float:
        """The cheapest admissible cost, or a clear error when nothing fits the budget."""
        c = self.constraint
        floor_cost = c.cost(cheapest(self.space, self.refs))
        if floor_cost > c.budget:
            what = "the smallest" if not self.refs else "the smallest containing the member below"
            raise FamcError(
                f"no architecture of `{self.space.name}` fits {c.label}'s {c.describe(c.budget)}: "
                f"{what} predicts {c.describe(floor_cost)} — raise the budget or pick a smaller "
                "space"
            )
        return floor_cost

    def draw(self, make: Callable[[], Arch], what: str) -> Arch:
        """Rejection sampling with a cap: never an endless loop on a budget nothing fits."""
        c, ref, screen = self.constraint, self.ref, self.settings.prescreen
        found: list[Arch] = []
        for _ in range(self.settings.max_tries):
            arch = make()
            if c.cost(arch) <= c.budget and (ref is None or self.space.contains(ref, arch)):
                found.append(arch)
                if screen is None or len(found) == screen.draws:
                    break
        if found:
            if screen is None:
                return found[0]
            predicted = screen.predict(found)
            return found[max(range(len(found)), key=predicted.__getitem__)]
        raise FamcError(
            f"{self.title}: no admissible {what} in {self.settings.max_tries} tries under "
            f"{c.label}'s {c.describe(c.budget)} — the budget leaves almost no room above "
            f"{c.describe(self.check_floor())}; raise it or max_tries"
        )

    def sample(self) -> Arch:
        ref = self.ref
        return (
            self.space.sample(self.rng)
            if ref is None
            else self.space.sample_containing(ref, self.rng)
        )

    def mutant(self, parents: Sequence[Candidate]) -> Arch:
        parent, ref, p = self.rng.choice(parents).arch, self.ref, self.settings.mutate_prob
        if ref is None:
            return self.space.mutate(parent, self.rng, p)
        return self.space.mutate_containing(ref, parent, self.rng, p)

    def child(self, parents: Sequence[Candidate]) -> Arch:
        a, b = self.rng.sample(list(parents), 2)
        return self.space.crossover(a.arch, b.arch, self.rng)

    def evaluate(self, archs: Sequence[Arch], generation: int,
                 bar: Candidate | None) -> list[Candidate]:  # fmt: skip
        """Candidates for ``archs``; the ones not seen before are scored in one fitness call."""
        for arch in archs:  # CAS is asserted for every candidate, not assumed
            for r in self.refs:
                if not self.space.contains(r, arch):
                    raise RuntimeError(f"CAS violated: {arch} does not contain {r}")
        new = [a for a in dict.fromkeys(archs) if a not in self.seen]
        for arch, score in zip(new, self.fitness(new, bar) if new else [], strict=True):
            self.seen[arch] = Candidate(arch, self.constraint.cost(arch), score, generation)
            self.trace.append(self.seen[arch])
        return [self.seen[a] for a in archs]


def evolve(
    space: SearchSpace,
    fitness: Fitness,
    constraint: Constraint,
    refs: Sequence[Arch],
    settings: EvolutionSettings,
    rng: random.Random,
    *,
    title: str = "search",
    reporter: Reporter | None = None,
) -> tuple[Candidate, list[Candidate]]:
    """Best candidate and the trace of every evaluated one. ``refs`` must be nested, smallest
    first: containing the last one then implies containing them all (CAS is transitive)."""
    ev = _Evolution(space, fitness, constraint, refs, settings, rng, title)
    ev.check_floor()
    s = settings
    n_parents = s.parents
    n_mutants = round(s.mutation_ratio * s.population)
    n_cross = max(0, s.population - n_parents - n_mutants)
    total = s.population + s.generations * (n_mutants + n_cross)
    with (reporter or Reporter("off")).task(title, total, best_reward="-") as task:

        def add(archs: list[Arch], generation: int, bar: Candidate | None) -> list[Candidate]:
            cands = ev.evaluate(archs, generation, bar)
            full = [c.score.reward for c in ev.trace if not c.score.partial]
            task.advance(len(archs), best_reward=f"{max(full):.3f}" if full else "-")
            return cands

        first = [ev.draw(ev.sample, "initial architecture") for _ in range(s.population)]
        population = add(first, 0, None)
        for g in range(1, s.generations + 1):
            parents = s.selection.parents(population, ev.trace, n_parents)
            mutant, child = partial(ev.mutant, parents), partial(ev.child, parents)
            drawn = [ev.draw(mutant, "mutant") for _ in range(n_mutants)]
            drawn += [ev.draw(child, "crossover child") for _ in range(n_cross)]
            bar = parents[-1] if not parents[-1].score.partial else None
            population = parents + add(drawn, g, bar)
    best = s.selection.choose(ev.trace)
    return best, ev.trace
