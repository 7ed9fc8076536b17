"""Which candidates a search keeps: the Top-1/NFR front, the two paragons, and the selection rules.

A member above the smallest is judged on two numbers, search Top-1 (higher is better) and NFR
against the member(s) below (lower is better). The *front* is every evaluated candidate no other
candidate beats on both; its two ends are REG-NAS's paragons (Table 4.2): the Top-1 paragon (what
R0 would pick) and the NFR paragon (what R1 would pick). A selection rule picks one point:

* ``reward``: the largest ``λ1·Top1 − λ2·NFR`` (REG-NAS's R2 with the configured λs).
* ``epsilon``: the lowest-NFR candidate whose Top-1 is within ``ε`` points of the best Top-1 found
  for that budget (near the Top-1 paragon, as far toward the NFR paragon as that allows). When the
  build also searches the plain-NAS baseline, its member of the same budget is the Top-1 paragon
  the band hangs from (``for_budget``): CAS can keep a member's own search from ever reaching the
  Top-1 that budget affords, and a band measured from its own best would follow it down.

A weighted sum picks whichever end the λs' exchange rate favours; on a saturated dataset, where
candidates differ by as little in Top-1 as in NFR, it drifts to "barely change the model below".
The ε rule states the Top-1 price in points instead.

Without references (the smallest member, the baseline) NFR is undefined and both rules reduce to
plain Top-1: the ε rule's band then ranks by Top-1 alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from famc.space.arch import Arch

if TYPE_CHECKING:  # evolution.py takes its default rule from here
    from famc.search.evolution import Candidate


def _nfr(c: Candidate) -> float:
    """NFR for ordering; a candidate scored without references has none and ranks as 0."""
    return 0.0 if c.score.nfr is None else c.score.nfr


def complete(cands: Sequence[Candidate]) -> list[Candidate]:
    """The fully evaluated candidates (racing stops some on a slice of the search split: their
    scores are not comparable, so they never join the front, become parents or get chosen);
    all of them only when none is complete, so a rule always has something to pick."""
    return [c for c in cands if not c.score.partial] or list(cands)


def pareto_front(cands: Sequence[Candidate]) -> list[Candidate]:
    """The fully evaluated candidates with an NFR that no other beats on both Top-1 (≥) and NFR
    (≤, one strictly), lowest NFR first; of equal points the first evaluated."""
    scored = sorted((c for c in cands if c.score.nfr is not None and not c.score.partial),
                    key=lambda c: (_nfr(c), -c.score.top1))  # fmt: skip
    front: list[Candidate] = []
    for c in scored:  # NFR ascending: a point joins iff it beats every lower-NFR point's Top-1
        if not front or c.score.top1 > front[-1].score.top1:
            front.append(c)
    return front


def top1_paragon(cands: Sequence[Candidate]) -> Candidate:
    """The best Top-1 (R0's pick), the lower NFR on ties."""
    return min(cands, key=lambda c: (-c.score.top1, _nfr(c), c.arch))


def nfr_paragon(cands: Sequence[Candidate]) -> Candidate:
    """The lowest NFR (R1's pick), the better Top-1 on ties."""
    return min(cands, key=lambda c: (_nfr(c), -c.score.top1, c.arch))


class Selection(Protocol):
    """How a search ranks its population for parents and picks its result."""

    def parents(self, population: Sequence[Candidate], seen: Sequence[Candidate],
                n: int) -> list[Candidate]: ...  # fmt: skip

    def choose(self, seen: Sequence[Candidate]) -> Candidate: ...

    def for_budget(self, paragon: float) -> Selection:
        """This rule for a budget whose Top-1 paragon (the baseline's member) scored ``paragon``."""
        ...


def reward_rank(c: Candidate) -> tuple[bool, float, Arch]:
    """Fully evaluated first, then by reward (ties: by architecture)."""
    return (c.score.partial, -c.score.reward, c.arch)


@dataclass(frozen=True)
class RewardSelection:
    """The largest reward ``λ1·Top1 − λ2·NFR`` wins; parents are the top ``n`` by reward."""

    def parents(self, population: Sequence[Candidate], seen: Sequence[Candidate],
                n: int) -> list[Candidate]:  # fmt: skip
        return sorted(population, key=reward_rank)[:n]

    def choose(self, seen: Sequence[Candidate]) -> Candidate:
        return min(seen, key=reward_rank)

    def for_budget(self, paragon: float) -> RewardSelection:
        return self  # the weighted sum does not look at other searches


@dataclass(frozen=True)
class EpsilonSelection:
    """The lowest NFR within ``epsilon_pt`` points of the best Top-1 found.

    Parents steer toward that region with the matching scalar: the population's Top-1 paragon
    first (it sets the band, so keeping it as a parent keeps pushing Top-1 up and the band with
    it), then the candidates inside the band by NFR, then those below it by Top-1 (they can only
    become eligible by gaining accuracy). The band is measured from the best Top-1 of every
    candidate evaluated so far (``seen``), so it never moves down, or from ``paragon`` (the
    baseline's Top-1 for this budget) when that is higher; when the search has nothing within
    ``ε`` of the paragon, its own best is the band.
    """

    epsilon_pt: float
    paragon: float | None = None

    def _floor(self, seen: Sequence[Candidate]) -> float:
        best = max(c.score.top1 for c in complete(seen))
        top = best if self.paragon is None else max(best, self.paragon)
        return min(best, top - self.epsilon_pt)

    def for_budget(self, paragon: float) -> EpsilonSelection:
        return EpsilonSelection(self.epsilon_pt, paragon)

    def parents(self, population: Sequence[Candidate], seen: Sequence[Candidate],
                n: int) -> list[Candidate]:  # fmt: skip
        floor, lead = self._floor(seen), top1_paragon(complete(population))

        def key(c: Candidate) -> tuple[int, float, float]:
            if c.score.partial:
                return (3, -c.score.top1, 0.0)
            if c is lead:
                return (0, 0.0, 0.0)
            if c.score.top1 >= floor:
                return (1, _nfr(c), -c.score.top1)
            return (2, -c.score.top1, 0.0)

        return sorted(population, key=lambda c: (*key(c), c.arch))[:n]

    def choose(self, seen: Sequence[Candidate]) -> Candidate:
        floor = self._floor(seen)
        return nfr_paragon([c for c in complete(seen) if c.score.top1 >= floor])


def selection(rule: str, epsilon_pt: float) -> Selection:
    """The ``search.selection`` rule of a config."""
    return SELECTIONS[rule](epsilon_pt)


#: ``search.selection`` → its rule, built from ``search.epsilon_pt``
SELECTIONS: dict[str, Callable[[float], Selection]] = {
    "reward": lambda _eps: RewardSelection(),
    "epsilon": EpsilonSelection,
}
