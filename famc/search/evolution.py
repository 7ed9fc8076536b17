"""Constrained evolutionary architecture search (OFA's finder; REG-NAS settings by default).

Each generation keeps the top ``parent_ratio`` of the population as parents and refills it with
mutants (``mutation_ratio``) and uniform crossovers of two parents. Candidates must satisfy the
compute constraint (rejection sampling with a retry cap, never an endless loop) and, under CAS, contain
every reference architecture.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from famc.errors import FamcError
from famc.space.arch import Arch
from famc.space.space import SearchSpace


@dataclass(frozen=True)
class EvolutionSettings:
    population: int = 100
    generations: int = 20
    parent_ratio: float = 0.25
    mutation_ratio: float = 0.5
    mutate_prob: float = 0.1
    max_tries: int = 2000  # rejection-sampling attempts per new candidate


@dataclass(frozen=True)
class Score:
    top1: float
    nfr: float | None  # against the reference(s); None without references
    reward: float


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
    top = refs[-1]
    return Arch(ks=top.ks, e=top.e, resolution=min(space.preset.resolutions))


def evolve(
    space: SearchSpace,
    fitness: Callable[[Arch], Score],
    constraint: Constraint,
    refs: Sequence[Arch],
    settings: EvolutionSettings,
    rng: random.Random,
    *,
    title: str = "search",
    progress: bool = True,
) -> tuple[Candidate, list[Candidate]]:
    """Best candidate and the trace of every evaluated one. ``refs`` must be nested, smallest
    first: containing the last one then implies containing them all (CAS is transitive)."""
    floor = cheapest(space, refs)
    floor_cost = constraint.cost(floor)
    if floor_cost > constraint.budget:
        what = "the smallest" if not refs else "the smallest containing the member below"
        raise FamcError(
            f"no architecture of `{space.name}` fits {constraint.label}'s "
            f"{constraint.describe(constraint.budget)}: {what} predicts "
            f"{constraint.describe(floor_cost)} — raise the budget or pick a smaller space"
        )
    ref = refs[-1] if refs else None

    def admissible(arch: Arch) -> bool:
        return constraint.cost(arch) <= constraint.budget and (
            ref is None or space.contains(ref, arch)
        )

    def draw(make: Callable[[], Arch], what: str) -> Arch:
        for _ in range(settings.max_tries):
            arch = make()
            if admissible(arch):
                return arch
        raise FamcError(
            f"{title}: no admissible {what} in {settings.max_tries} tries under "
            f"{constraint.label}'s {constraint.describe(constraint.budget)} — the budget leaves "
            f"almost no room above {constraint.describe(floor_cost)}; raise it or max_tries"
        )

    trace: list[Candidate] = []
    seen: dict[Arch, Candidate] = {}

    def evaluate(arch: Arch, generation: int) -> Candidate:
        for r in refs:  # CAS is asserted for every candidate, not assumed
            if not space.contains(r, arch):
                raise RuntimeError(f"CAS violated: {arch} does not contain {r}")
        if arch not in seen:
            seen[arch] = Candidate(arch, constraint.cost(arch), fitness(arch), generation)
            trace.append(seen[arch])
        return seen[arch]

    def sample() -> Arch:
        return space.sample(rng) if ref is None else space.sample_containing(ref, rng)

    def mutate(parent: Arch) -> Arch:
        if ref is None:
            return space.mutate(parent, rng, settings.mutate_prob)
        return space.mutate_containing(ref, parent, rng, settings.mutate_prob)

    n_parents = max(2, round(settings.parent_ratio * settings.population))
    n_mutants = round(settings.mutation_ratio * settings.population)
    n_cross = max(0, settings.population - n_parents - n_mutants)
    total = settings.population + settings.generations * (n_mutants + n_cross)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("best reward {task.fields[best]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task(title, total=total, best="-")

        def add(arch: Arch, generation: int) -> Candidate:
            cand = evaluate(arch, generation)
            best = max(c.score.reward for c in trace)
            bar.update(task, advance=1, best=f"{best:.3f}")
            return cand

        population = [add(draw(sample, "initial architecture"), 0)]
        population += [
            add(draw(sample, "initial architecture"), 0) for _ in range(settings.population - 1)
        ]
        for g in range(1, settings.generations + 1):
            parents = sorted(population, key=lambda c: (-c.score.reward, c.arch))[:n_parents]

            def mutant(parents: list[Candidate] = parents) -> Arch:
                return mutate(rng.choice(parents).arch)

            def cross(parents: list[Candidate] = parents) -> Arch:
                a, b = rng.sample(parents, 2)
                return space.crossover(a.arch, b.arch, rng)

            children = [add(draw(mutant, "mutant"), g) for _ in range(n_mutants)]
            children += [add(draw(cross, "crossover child"), g) for _ in range(n_cross)]
            population = parents + children
    best = min(trace, key=lambda c: (-c.score.reward, c.arch))
    return best, trace
