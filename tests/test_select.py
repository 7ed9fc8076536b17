"""The Top-1/NFR front, the paragons and the selection rules (famc.search.select)."""

from __future__ import annotations

import random

import pytest

from famc.search.evolution import Candidate, Score
from famc.search.select import (
    EpsilonSelection,
    RewardSelection,
    nfr_paragon,
    pareto_front,
    selection,
    top1_paragon,
)
from famc.space import get_space

SPACE = get_space("fashion-mbv3")
ARCHS = sorted({SPACE.sample(random.Random(i)) for i in range(40)})


def cand(i: int, top1: float, nfr: float | None, partial: bool = False) -> Candidate:
    reward = top1 - (nfr or 0.0)
    return Candidate(ARCHS[i], 1.0, Score(top1, nfr, reward, 100, partial), 0)


#: (Top-1, NFR): a front of four, two dominated points and one the race stopped
POINTS = [
    cand(0, 90.0, 3.0),  # R0 paragon
    cand(1, 89.8, 2.0),
    cand(2, 89.5, 1.0),
    cand(3, 88.0, 0.5),  # R1 paragon
    cand(4, 89.0, 2.5),  # dominated by 1
    cand(5, 87.0, 1.0),  # dominated by 2
    cand(6, 95.0, 0.1, partial=True),  # looks best on a slice: never counts
]


def test_front_is_the_non_dominated_complete_candidates_lowest_nfr_first():
    front = pareto_front(POINTS)
    assert [c.arch for c in front] == [ARCHS[3], ARCHS[2], ARCHS[1], ARCHS[0]]
    for c in POINTS[:6]:  # every complete candidate is on the front or beaten by a front point
        on_front = c in front
        beaten = any(f.score.top1 >= c.score.top1 and f.score.nfr <= c.score.nfr and f is not c
                     for f in front)  # fmt: skip
        assert on_front != beaten
    complete = [c for c in POINTS if not c.score.partial]
    assert top1_paragon(complete) is POINTS[0] and nfr_paragon(complete) is POINTS[3]


@pytest.mark.parametrize(("eps", "chosen"), [(0.0, 0), (0.3, 1), (0.5, 2), (2.0, 3), (9.0, 3)])
def test_epsilon_picks_the_lowest_nfr_within_eps_of_the_best_top1(eps, chosen):
    assert EpsilonSelection(eps).choose(POINTS) is POINTS[chosen]


@pytest.mark.parametrize(("paragon", "chosen"), [(90.2, 1), (90.4, 0), (90.0, 2), (89.5, 2),
                                                 (91.0, 0)])  # fmt: skip
def test_epsilon_band_hangs_from_the_baseline_paragon_when_it_is_higher(paragon, chosen):
    """ε = 0.5 below the baseline's Top-1 for the budget: 90.2 → band ≥ 89.7 (POINTS 0, 1), 90.4
    → ≥ 89.9 (0 only); a paragon at or below the search's own best (90.0) changes nothing (band
    ≥ 89.5); one the search never came within ε of (91.0) leaves its own best."""
    assert EpsilonSelection(0.5).for_budget(paragon).choose(POINTS) is POINTS[chosen]
    assert RewardSelection().for_budget(paragon) == RewardSelection()


def test_reward_picks_the_largest_reward_and_it_lies_on_the_front():
    best = RewardSelection().choose(POINTS)
    assert best is POINTS[2]  # 89.5 - 1.0 is the largest complete reward
    assert best in pareto_front(POINTS)


def test_without_references_both_rules_are_plain_top1():
    plain = [cand(i, t, None) for i, t in enumerate([85.0, 87.5, 86.0, 87.4])]
    assert RewardSelection().choose(plain) is plain[1]
    assert EpsilonSelection(1.0).choose(plain) is plain[1]
    assert EpsilonSelection(1.0).parents(plain, plain, 2) == [plain[1], plain[3]]
    assert pareto_front(plain) == []


def test_epsilon_parents_keep_the_top1_paragon_then_the_band_by_nfr():
    parents = EpsilonSelection(0.5).parents(POINTS, POINTS, 4)
    # paragon first (it sets the band), then inside the band (≥ 89.5) by NFR, then by Top-1;
    # the stopped candidate comes last whatever its partial score
    assert parents == [POINTS[0], POINTS[2], POINTS[1], POINTS[4]]
    assert EpsilonSelection(0.5).parents(POINTS, POINTS, 7)[-1] is POINTS[6]
    assert RewardSelection().parents(POINTS, POINTS, 7)[-1] is POINTS[6]


def test_config_rule_names():
    assert isinstance(selection("reward", 0.3), RewardSelection)
    assert selection("epsilon", 0.4) == EpsilonSelection(0.4)
