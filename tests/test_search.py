"""Evolutionary search: constraints, CAS on every candidate, determinism, clear infeasibility errors,
and the on-disk result cache."""

from __future__ import annotations

import json
import random

import pytest
import torch

from famc.errors import FamcError
from famc.evaluate.cache import ResultCache, result_key
from famc.progress import Reporter
from famc.search.evolution import Constraint, EvolutionSettings, Prescreen, Score, evolve
from famc.search.family import MemberSpec, search_family
from famc.space import flops, get_space

SPACE = get_space("fashion-mbv3")
SMALL = EvolutionSettings(population=12, generations=4, mutate_prob=0.3)


def mflops(budget: float, label: str = "edge") -> Constraint:
    return Constraint(lambda a: flops(SPACE, a) / 1e6, budget, lambda x: f"{x:.2f} MFLOPs", label)


def fake_fitness(arch) -> Score:
    """Bigger is better, with a deterministic per-architecture wobble."""
    wobble = random.Random(str(arch)).random()
    return Score(flops(SPACE, arch) / 1e6 + wobble, None, flops(SPACE, arch) / 1e6 + wobble)


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
    vectors: dict = {}

    def correct(arch):
        if arch not in vectors:
            g = torch.Generator().manual_seed(hash(arch) % 2**31)
            p = min(0.95, 0.5 + flops(SPACE, arch) / 30e6)
            vectors[arch] = torch.rand(500, generator=g) < p
        return vectors[arch]

    specs = [MemberSpec("edge", mflops(3.0)), MemberSpec("server", mflops(6.0, "server")),
             MemberSpec("cloud", mflops(12.0, "cloud"))]  # fmt: skip
    fam = search_family(SPACE, specs, correct, SMALL, regnas=True, lambda1=1, lambda2=1,
                        reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert [m.contains for m in fam] == [None, "edge", "server"]
    for lo, hi in zip(fam, fam[1:], strict=False):
        assert SPACE.contains(lo.best.arch, hi.best.arch)
    assert fam[1].best.score.nfr is not None
    base = search_family(SPACE, specs, correct, SMALL, regnas=False, lambda1=1, lambda2=1,
                         reference="below", seed=0, reporter=Reporter("off"))  # fmt: skip
    assert base[0].best.arch == fam[0].best.arch  # same R0 search for the smallest
    assert all(m.contains is None for m in base)

    too_small = [MemberSpec("edge", mflops(6.0)), MemberSpec("server", mflops(2.0, "server"))]
    with pytest.raises(FamcError, match="server's budget 2.00 MFLOPs cannot hold edge's model"):
        search_family(SPACE, too_small, correct, SMALL, regnas=True, lambda1=1, lambda2=1,
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
