"""Searching a nested family (REG-NAS §4) and the plain-NAS baseline family.

REG-NAS: the smallest member is searched with R0 (Top-1) under its budget; every next member with
``λ1·Top1 − λ2·NFR`` under CAS against the member below (or against every smaller member). Baseline:
every member with R0 and no CAS — what existing NAS would ship.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from famc.errors import FamcError
from famc.metrics import nfr as nfr_rate
from famc.metrics import reward, top1
from famc.progress import Reporter
from famc.search.evolution import Candidate, Constraint, EvolutionSettings, Score, evolve
from famc.space.arch import Arch
from famc.space.space import SearchSpace


@dataclass(frozen=True)
class MemberSpec:
    name: str
    constraint: Constraint


@dataclass(frozen=True)
class FoundMember:
    name: str
    best: Candidate
    contains: str | None
    trace: list[Candidate]


def search_family(
    space: SearchSpace,
    members: Sequence[MemberSpec],
    correct: Callable[[Arch], torch.Tensor],
    settings: EvolutionSettings,
    *,
    regnas: bool,
    lambda1: float,
    lambda2: float,
    reference: str,
    seed: int,
    reporter: Reporter,
) -> list[FoundMember]:
    """Search every member, smallest first. ``correct(arch)`` gives the search-split vector."""
    found: list[FoundMember] = []
    for i, spec in enumerate(members):
        refs: list[Arch] = []
        if regnas and found:
            refs = [m.best.arch for m in found] if reference == "all" else [found[-1].best.arch]
            below = found[-1]
            cost = spec.constraint.cost(below.best.arch)
            if cost > spec.constraint.budget:
                raise FamcError(
                    f"{spec.name}'s budget {spec.constraint.describe(spec.constraint.budget)} "
                    f"cannot hold {below.name}'s model ({spec.constraint.describe(cost)} on "
                    f"{spec.name}'s cost model), yet {spec.name} must contain it: raise "
                    f"{spec.name}'s budget or lower {below.name}'s"
                )
        ref_vectors = [correct(r) for r in refs]
        l1, l2 = (lambda1, lambda2) if refs else (1.0, 0.0)

        def fitness(
            arch: Arch, refs: list[torch.Tensor] = ref_vectors, l1: float = l1, l2: float = l2
        ) -> Score:
            c = correct(arch)
            nfr = sum(nfr_rate(r, c) for r in refs) / len(refs) if refs else None
            return Score(top1(c), nfr, reward(c, refs, l1, l2))

        mode = "R0" if not refs else f"R(λ1={l1:g},λ2={l2:g})+CAS"
        title = f"{'reg-nas' if regnas else 'baseline'} {spec.name} [{mode}]"
        rng = random.Random(f"{seed}:{i}:{spec.name}")
        best, trace = evolve(space, fitness, spec.constraint, refs, settings, rng, title=title,
                             reporter=reporter)  # fmt: skip
        found.append(FoundMember(spec.name, best, found[-1].name if refs else None, trace))
    return found
