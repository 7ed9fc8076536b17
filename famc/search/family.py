"""Searching a nested family (REG-NAS §4) and the plain-NAS baseline family.

REG-NAS: the smallest member is searched with R0 (Top-1) under its budget; every next member with
``λ1·Top1 − λ2·NFR`` under CAS against the member below (or against every smaller member). Baseline:
every member with R0 and no CAS — what existing NAS would ship.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch

from famc.errors import FamcError
from famc.metrics import nfr as nfr_rate
from famc.metrics import reward, top1
from famc.progress import Reporter
from famc.search.evolution import (
    Candidate,
    Constraint,
    EvolutionSettings,
    Fitness,
    Score,
    cheapest,
    evolve,
)
from famc.search.race import Race
from famc.space.arch import Arch
from famc.space.space import SearchSpace


@dataclass(frozen=True)
class MemberSpec:
    name: str
    constraint: Constraint


@dataclass(frozen=True)
class SearchVectors:
    """The search split's vectors of several architectures (``of(archs, race)``; a candidate a
    race stopped has a prefix), and the split's size."""

    size: int
    of: Callable[[Sequence[Arch], Race | None], list[torch.Tensor]]


@dataclass(frozen=True)
class Racing:
    """Stop a candidate after ``images`` search images when it is ``z`` standard errors below the
    weakest parent (famc.search.race)."""

    images: int
    z: float


def _fitness(vectors: SearchVectors, refs: Sequence[Arch], l1: float, l2: float,
             racing: Racing | None, parents: int) -> Fitness:  # fmt: skip
    """Scores of a batch of candidates: Top-1, NFR against ``refs`` and the reward, on the whole
    search split, or on its first images for a candidate a race stopped."""
    ref_vectors = vectors.of(refs, None)

    def race_for(archs: Sequence[Arch], bar: Candidate | None) -> Race | None:
        """Against the weakest parent; in the first generation against the candidate that would
        be the weakest parent if the first images were all there is."""
        if racing is None:
            return None
        if bar is not None:
            bar_vector = vectors.of([bar.arch], None)[0]
        else:
            slices = vectors.of(archs, Race.probing(racing.images))
            if len(slices) <= parents:
                return None
            head = [r[: racing.images] for r in ref_vectors]
            rewards = [reward(v, head, l1, l2) for v in slices]
            bar_vector = slices[sorted(range(len(slices)), key=lambda i: -rewards[i])[parents - 1]]
        return Race.against(bar_vector, ref_vectors, racing.images, l1, l2, racing.z)

    def fitness(archs: Sequence[Arch], bar: Candidate | None) -> list[Score]:
        race = race_for(archs, bar)
        scores = []
        for c in vectors.of(archs, race):
            n = c.numel()
            refs_n = [r[:n] for r in ref_vectors]
            nfr = sum(nfr_rate(r, c) for r in refs_n) / len(refs_n) if refs_n else None
            scores.append(Score(top1(c), nfr, reward(c, refs_n, l1, l2), n, n < vectors.size))
        return scores

    return fitness


@dataclass(frozen=True)
class FoundMember:
    name: str
    best: Candidate
    contains: str | None
    trace: list[Candidate]


def search_family(
    space: SearchSpace,
    members: Sequence[MemberSpec],
    vectors: SearchVectors,
    settings: EvolutionSettings,
    *,
    regnas: bool,
    lambda1: float,
    lambda2: float,
    reference: str,
    seed: int,
    reporter: Reporter,
    racing: Racing | None = None,
    cas: bool = True,
    paragons: Sequence[float] | None = None,
) -> list[FoundMember]:
    """Search every member, smallest first, scoring candidates with ``vectors``. ``cas=False``
    keeps the NFR reward but not the nesting: REG-NAS's R1/R2 ablations (Table 4.2), a family
    whose members do not contain each other. ``paragons``: each member's Top-1 paragon (the
    baseline's search Top-1 for the same budget), for selection rules that measure from it."""
    found: list[FoundMember] = []
    for i, spec in enumerate(members):
        refs: list[Arch] = []
        if regnas and found:
            refs = [m.best.arch for m in found] if reference == "all" else [found[-1].best.arch]
            if cas:
                _check_holds(space, spec, found[-1])
        l1, l2 = (lambda1, lambda2) if refs else (1.0, 0.0)
        mode = "R0" if not refs else f"R(λ1={l1:g},λ2={l2:g})" + "+CAS" * cas
        title = f"{'reg-nas' if regnas else 'baseline'} {spec.name} [{mode}]"
        rng = random.Random(f"{seed}:{i}:{spec.name}")
        nested = refs if cas else []
        fitness = _fitness(vectors, refs, l1, l2, racing, settings.parents)
        rule = settings if paragons is None or not refs else replace(
            settings, selection=settings.selection.for_budget(paragons[i]))  # fmt: skip
        best, trace = evolve(space, fitness, spec.constraint, nested, rule, rng, title=title,
                             reporter=reporter)  # fmt: skip
        found.append(FoundMember(spec.name, best, found[-1].name if nested else None, trace))
    return found


def _check_holds(space: SearchSpace, spec: MemberSpec, below: FoundMember) -> None:
    """A member must contain the one below, so its budget must hold it (at the lowest
    resolution: CAS leaves resolution free)."""
    c = spec.constraint
    cost = c.cost(cheapest(space, [below.best.arch]))
    if cost > c.budget:
        raise FamcError(
            f"{spec.name}'s budget {c.describe(c.budget)} cannot hold {below.name}'s model "
            f"({c.describe(cost)} on {spec.name}'s cost model, at the lowest resolution), yet "
            f"{spec.name} must contain it: raise {spec.name}'s budget or lower {below.name}'s"
        )
