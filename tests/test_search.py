"""Evolutionary search: constraints, CAS on every candidate, determinism, clear infeasibility errors,
and the on-disk result cache."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, replace

import pytest
import torch

from famc.errors import FamcError
from famc.evaluate.cache import ResultCache, result_key
from famc.metrics import nfr as nfr_rate
from famc.progress import Reporter
from famc.search.evolution import Constraint, EvolutionSettings, Prescreen, Score, evolve
from famc.search.family import MemberSpec, Racing, SearchVectors, search_family
from famc.search.race import Race
from famc.search.select import EpsilonSelection, RewardSelection, pareto_front
from famc.space import flops, get_space

SPACE = get_space("fashion-mbv3")
SMALL = EvolutionSettings(population=12, generations=4, mutate_prob=0.3)


def mflops(budget: float, label: str = "edge") -> Constraint:
    return Constraint(lambda a: flops(SPACE, a) / 1e6, budget, lambda x: f"{x:.2f} MFLOPs", label)


def fake_fitness(archs, bar) -> list[Score]:
    """Bigger is better, with a deterministic per-architecture wobble."""
    scores = []
    for arch in archs:
        value = flops(SPACE, arch) / 1e6 + random.Random(str(arch)).random()
        scores.append(Score(value, None, value, 1))
    return scores


def test_budget_respected_and_best_is_best_of_trace():
    best, trace = evolve(SPACE, fake_fitness, mflops(4.0), [], SMALL, random.Random(0),
                         reporter=Reporter("off"))  # fmt: skip
    assert all(c.cost <= 4.0 for c in trace)
    assert best.score.reward == max(c.score.reward for c in trace)
    assert len({c.arch for c in trace}) == len(trace)  # each architecture evaluated once
    assert max(c.generation for c in trace) == SMALL.generations
    # evolution improves on the initial random population
    assert best.score.reward >= max(c.score.reward for c in trace if c.generation == 0)


def test_deterministic_for_a_seed():
    runs = [
        evolve(
            SPACE, fake_fitness, mflops(4.0), [], SMALL, random.Random(5), reporter=Reporter("off")
        )
        for _ in range(2)
    ]
    assert [c.arch for c in runs[0][1]] == [c.arch for c in runs[1][1]]


def test_cas_holds_for_every_candidate():
    ref = SPACE.sample_containing(SPACE.smallest(), random.Random(1))
    budget = flops(SPACE, ref) / 1e6 * 1.8
    best, trace = evolve(SPACE, fake_fitness, mflops(budget, "server"), [ref], SMALL,
                         random.Random(2), reporter=Reporter("off"))  # fmt: skip
    assert trace and all(SPACE.contains(ref, c.arch) for c in trace)


def test_infeasible_budget_fails_clearly():
    smallest = flops(SPACE, SPACE.smallest()) / 1e6
    with pytest.raises(FamcError, match=rf"no architecture of `fashion-mbv3` fits edge's 0.50 MFLOPs: the smallest predicts {smallest:.2f} MFLOPs"):  # fmt: skip
        evolve(
            SPACE, fake_fitness, mflops(0.5), [], SMALL, random.Random(0), reporter=Reporter("off")
        )


def test_nearly_infeasible_budget_stops_after_max_tries():
    smallest = flops(SPACE, SPACE.smallest()) / 1e6
    settings = EvolutionSettings(population=12, generations=1, max_tries=50)
    with pytest.raises(FamcError, match="no admissible initial architecture in 50 tries"):
        evolve(SPACE, fake_fitness, mflops(smallest + 1e-6), [], settings, random.Random(0),
               reporter=Reporter("off"))  # fmt: skip


def test_prescreen_evaluates_the_best_predicted_of_its_draws():
    predicted: list[tuple[list, list[float]]] = []

    def predict(archs):  # a predictor that prefers fewer FLOPs, unlike the fitness
        values = [-flops(SPACE, a) / 1e6 for a in archs]
        predicted.append((list(archs), values))
        return values

    settings = EvolutionSettings(population=12, generations=2, mutate_prob=0.3,
                                 prescreen=Prescreen(predict, draws=4))  # fmt: skip
    _, trace = evolve(SPACE, fake_fitness, mflops(6.0), [], settings, random.Random(0),
                      reporter=Reporter("off"))  # fmt: skip
    assert all(len(archs) == 4 for archs, _ in predicted)
    chosen = [archs[values.index(max(values))] for archs, values in predicted]
    assert [c.arch for c in trace] == list(dict.fromkeys(chosen))  # only the winners evaluated
    assert all(c.cost <= 6.0 for c in trace)
    _, plain = evolve(SPACE, fake_fitness, mflops(6.0), [], SMALL, random.Random(0),
                      reporter=Reporter("off"))  # fmt: skip
    first = [c.cost for c in trace if c.generation == 0]
    assert sum(first) < sum(c.cost for c in plain if c.generation == 0)


def test_family_members_nest_and_budget_order_is_checked():
    known: dict = {}

    def correct(archs, race):
        for arch in archs:
            if arch not in known:
                g = torch.Generator().manual_seed(hash(arch) % 2**31)
                p = min(0.95, 0.5 + flops(SPACE, arch) / 30e6)
                known[arch] = torch.rand(500, generator=g) < p
        return [known[a] for a in archs]

    specs = [MemberSpec("edge", mflops(3.0)), MemberSpec("server", mflops(6.0, "server")),
             MemberSpec("cloud", mflops(12.0, "cloud"))]  # fmt: skip
    vectors = SearchVectors(500, correct)
    fam = search_family(SPACE, specs, vectors, SMALL, regnas=True, lambda1=1, lambda2=1,
                        reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert [m.contains for m in fam] == [None, "edge", "server"]
    for lo, hi in zip(fam, fam[1:], strict=False):
        assert SPACE.contains(lo.best.arch, hi.best.arch)
    assert fam[1].best.score.nfr is not None
    base = search_family(SPACE, specs, vectors, SMALL, regnas=False, lambda1=1, lambda2=1,
                         reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert base[0].best.arch == fam[0].best.arch  # same R0 search for the smallest
    assert all(m.contains is None for m in base)

    too_small = [MemberSpec("edge", mflops(6.0)), MemberSpec("server", mflops(2.0, "server"))]
    with pytest.raises(FamcError, match="server's budget 2.00 MFLOPs cannot hold edge's model"):
        search_family(SPACE, too_small, vectors, SMALL, regnas=True, lambda1=1, lambda2=1,
                      reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip


def test_result_cache_round_trip_and_survives_torn_line(tmp_path):
    path = tmp_path / "cache.jsonl"
    cache = ResultCache(path)
    vec = torch.rand(1001, generator=torch.Generator().manual_seed(0)) < 0.7
    key = result_key(SPACE.largest(), "ctx")
    cache.put(key, vec)
    with open(path, "a") as f:
        f.write('{"key": "abc", "n": 3, "bi')  # a write cut short by a kill
    again = ResultCache(path)
    assert torch.equal(again.get(key, 1001), vec) and again.hits == 1
    assert again.bad == 1  # the torn line
    assert again.get(result_key(SPACE.largest(), "other ctx"), 1001) is None
    assert again.get(key, 1000) is None  # a vector of another split size is never served
    assert result_key(SPACE.smallest(), "ctx") != key


def test_result_cache_keeps_a_raced_prefix_as_a_prefix_until_extended(tmp_path):
    path = tmp_path / "cache.jsonl"
    vec = torch.rand(2000, generator=torch.Generator().manual_seed(1)) < 0.8
    key = result_key(SPACE.smallest(), "ctx")
    cache = ResultCache(path)
    cache.put(key, vec[:500])  # a candidate a race stopped
    prefix = ResultCache(path).get(key, 2000)
    assert prefix is not None and torch.equal(prefix, vec[:500])  # not padded to 2000
    cache.put(key, vec)  # it survived a later race
    cache.put(key, vec[:500])  # a stale shorter line never shadows the longer one
    assert torch.equal(ResultCache(path).get(key, 2000), vec)


def test_result_cache_rejects_damaged_entries_and_unusable_files(tmp_path):
    path = tmp_path / "cache.jsonl"
    vec = torch.rand(64, generator=torch.Generator().manual_seed(1)) < 0.5
    ResultCache(path).put("k", vec)
    good = path.read_text()
    row = json.loads(good)
    flipped = {**row, "bits": ("B" if row["bits"][0] != "B" else "C") + row["bits"][1:]}
    for text in (json.dumps(flipped), json.dumps({**row, "n": 63}), "[1, 2]", "\udcff"):
        path.write_bytes(text.encode("utf-8", "surrogateescape") + b"\n")
        cache = ResultCache(path)
        assert cache.get("k", 64) is None and cache.bad == 1, text
    directory = tmp_path / "dir.jsonl"
    directory.mkdir()
    cache = ResultCache(directory)
    cache.put("k", vec)  # cannot persist, but the build goes on with a memory cache
    assert cache.problem is not None and "memory only" in cache.problem
    assert torch.equal(cache.get("k", 64), vec)


def _raced_vectors(truth: dict, computed: dict):
    """Search vectors that honour a race the way the engine does (prefix, then judge);
    ``computed`` counts the samples evaluated per architecture (a cache makes repeats free)."""

    difficulty = torch.rand(2000, generator=torch.Generator().manual_seed(7))

    def vectors(archs, race):
        out = []
        for arch in archs:
            if arch not in truth:  # models share which samples are hard, as real ones do
                g = torch.Generator().manual_seed(hash(arch) % 2**31)
                p = min(0.95, 0.5 + flops(SPACE, arch) / 20e6)
                truth[arch] = (difficulty < p) ^ (torch.rand(2000, generator=g) < 0.02)
            v = truth[arch]
            stopped = race is not None and not race.keep_going(v[: race.images])
            out.append(v[: race.images] if stopped else v)
            computed[arch] = max(computed.get(arch, 0), out[-1].numel())
        return out

    return vectors


def test_racing_stops_losers_early_and_chooses_as_exhaustive_search_does():
    specs = [MemberSpec("edge", mflops(3.0)), MemberSpec("server", mflops(6.0, "server"))]
    runs = {}
    for racing in (None, Racing(images=200, z=2.33)):
        truth: dict = {}
        computed: dict = {}
        vectors = SearchVectors(2000, _raced_vectors(truth, computed))
        fam = search_family(SPACE, specs, vectors, SMALL, regnas=True,
                            lambda1=1, lambda2=1, reference="below", seed=0,
                            reporter=Reporter("off"), racing=racing)  # fmt: skip
        runs[racing is None] = (fam, sum(computed.values()))
        for m in fam:
            assert not m.best.score.partial and m.best.score.images == 2000
            for c in m.trace:  # a stopped candidate rests on the race's slice, nothing else
                assert c.score.images == (200 if c.score.partial else 2000)
    (raced, raced_cost), (full, full_cost) = runs[False], runs[True]
    assert [m.best.arch for m in raced] == [m.best.arch for m in full]
    assert [m.best.score for m in raced] == [m.best.score for m in full]
    stopped = sum(c.score.partial for m in raced for c in m.trace)
    assert stopped > 0 and raced_cost < 0.8 * full_cost, (stopped, raced_cost, full_cost)


def test_race_decision_is_a_paired_comparison_with_the_bar():
    g = torch.Generator().manual_seed(0)
    bar = torch.rand(1000, generator=g) < 0.9
    same = Race.against(bar, [], 1000, 1.0, 1.0, 2.33)
    assert same.keep_going(bar.clone())  # identical to the bar: not worse
    worse = bar & (torch.rand(1000, generator=g) < 0.9)  # loses ~9 % of the bar's successes
    assert not same.keep_going(worse)
    better = bar | (torch.rand(1000, generator=g) < 0.5)
    assert same.keep_going(better)
    # with a reference, flips count against the candidate too: same Top-1, more flips → stopped
    ref = bar.clone()
    swapped = bar.clone()
    right, wrong = torch.nonzero(bar).flatten()[:60], torch.nonzero(~bar).flatten()[:60]
    swapped[right], swapped[wrong] = False, True
    assert Race.against(bar, [], 1000, 1.0, 0.0, 2.33).keep_going(swapped)
    assert not Race.against(bar, [ref], 1000, 1.0, 1.0, 2.33).keep_going(swapped)


def test_evolution_beats_random_sampling_of_the_same_budget():
    """Selection pressure: on a fitness whose optimum is known (closeness to a hidden target
    architecture), the evolution gets nearer than as many uniformly random architectures do, for
    every seed. Parents chosen from the wrong end of the ranking fail this."""
    target = SPACE.sample(random.Random(123))

    def closeness(archs, bar) -> list[Score]:
        return [Score(-SPACE.hamming(a, target), None, -SPACE.hamming(a, target), 1) for a in archs]

    anything = Constraint(lambda a: 0.0, 1.0, str, "any")
    settings = EvolutionSettings(population=20, generations=8, mutate_prob=0.15)
    for seed in range(3):
        best, trace = evolve(SPACE, closeness, anything, [], settings, random.Random(seed),
                             reporter=Reporter("off"))  # fmt: skip
        rng = random.Random(1000 + seed)
        drawn = closeness([SPACE.sample(rng) for _ in range(len(trace))], None)
        assert best.score.top1 > max(s.top1 for s in drawn) + 2, seed
        assert best.score.top1 >= -5  # within 5 of the genome's 29 genes of the optimum


def _vectors(prefer_resolution: bool = False):
    """Search vectors per architecture (bigger is better; optionally higher resolution too)."""
    cache: dict = {}

    def vectors(archs, race):
        for arch in archs:
            if arch not in cache:
                g = torch.Generator().manual_seed(hash(arch) % 2**31)
                p = min(0.95, 0.5 + flops(SPACE, arch) / 30e6 + 0.1 * prefer_resolution
                        * (arch.resolution == max(SPACE.preset.resolutions)))  # fmt: skip
                cache[arch] = torch.rand(500, generator=g) < p
        return [cache[a] for a in archs]

    return SearchVectors(500, vectors)


def test_reference_all_scores_nfr_against_every_smaller_member():
    vectors = _vectors()
    specs = [MemberSpec("edge", mflops(3.0)), MemberSpec("server", mflops(6.0, "server")),
             MemberSpec("cloud", mflops(12.0, "cloud"))]  # fmt: skip
    fam = search_family(SPACE, specs, vectors, SMALL, regnas=True, lambda1=1, lambda2=1,
                        reference="all", seed=0, reporter=Reporter("off"))  # fmt: skip
    edge, server, cloud = fam
    e, s = vectors.of([edge.best.arch, server.best.arch], None)
    for c in cloud.trace:
        assert SPACE.contains(edge.best.arch, c.arch) and SPACE.contains(server.best.arch, c.arch)
        [v] = vectors.of([c.arch], None)
        assert c.score.nfr == pytest.approx((nfr_rate(e, v) + nfr_rate(s, v)) / 2)
    assert cloud.contains == "server"


def test_epsilon_selection_chooses_lowest_nfr_near_the_best_top1():
    vectors = _vectors()
    specs = [MemberSpec("edge", mflops(3.0)), MemberSpec("server", mflops(6.0, "server"))]
    settings = replace(SMALL, selection=EpsilonSelection(1.0))
    edge, server = search_family(SPACE, specs, vectors, settings, regnas=True, lambda1=1,
                                 lambda2=1, reference="below", seed=0,
                                 reporter=Reporter("off"))  # fmt: skip
    best_top1 = max(c.score.top1 for c in server.trace)
    band = [c for c in server.trace if c.score.top1 >= best_top1 - 1.0]
    assert server.best.score.top1 >= best_top1 - 1.0
    assert server.best.score.nfr == min(c.score.nfr for c in band)
    assert server.best in pareto_front(server.trace)
    plain = search_family(SPACE, specs[:1], vectors, SMALL, regnas=True, lambda1=1, lambda2=1,
                          reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert edge.best.arch == plain[0].best.arch  # no reference: plain Top-1 under both rules
    # each member searched against a reference gets the rule for its own budget's paragon
    given: list[float] = []

    @dataclass(frozen=True)
    class Recording(RewardSelection):
        def for_budget(self, paragon: float) -> RewardSelection:
            given.append(paragon)
            return self

    recording = replace(SMALL, selection=Recording())
    search_family(SPACE, specs, vectors, recording, regnas=True, lambda1=1, lambda2=1,
                  reference="below", seed=0, reporter=Reporter("off"), paragons=[80.0, 90.0])  # fmt: skip
    assert given == [90.0]  # the edge has no reference: plain Top-1, no paragon


def test_member_below_is_costed_at_the_lowest_resolution():
    """CAS leaves resolution free, so a budget that holds the member below only at the lowest
    resolution still admits a member containing it."""
    vectors = _vectors(prefer_resolution=True)
    edge_spec = MemberSpec("edge", mflops(3.0))
    [edge] = search_family(SPACE, [edge_spec], vectors, SMALL, regnas=True, lambda1=1,
                           lambda2=1, reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    low = replace(edge.best.arch, resolution=min(SPACE.preset.resolutions))
    assert edge.best.arch.resolution > low.resolution  # the edge chose the higher resolution
    budget = (flops(SPACE, low) + flops(SPACE, edge.best.arch)) / 2e6  # between the two costs
    specs = [edge_spec, MemberSpec("server", mflops(budget, "server"))]
    _, server = search_family(SPACE, specs, vectors, SMALL, regnas=True, lambda1=1, lambda2=1,
                              reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert SPACE.contains(edge.best.arch, server.best.arch)
    assert server.best.arch.resolution == low.resolution and server.best.cost <= budget
