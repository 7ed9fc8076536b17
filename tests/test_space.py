"""Search space: sampling, CAS containment, mutation/crossover closure, JSON and OFA round-trips."""

from __future__ import annotations

import json
import random

import pytest

from famc.errors import FamcError
from famc.space import PRESETS, Arch, get_space


@pytest.fixture(params=list(PRESETS))
def space(request):
    return get_space(request.param)


def test_unknown_preset_lists_presets():
    with pytest.raises(
        FamcError, match="known presets: ofa-mbv3-w1.2, ofa-mbv3-w1.0, fashion-mbv3"
    ):
        get_space("resnet50")


def test_size_counts_distinct_archs():
    space = get_space("fashion-mbv3")
    p = space.preset
    # 9 (kernel, expand) pairs per layer, depths 1..3, 4 stages, 2 resolutions
    assert space.size() == (9 + 9**2 + 9**3) ** 4 * 2
    assert len(p.resolutions) == 2
    # OFA's space: ((3*3)^2 + (3*3)^3 + (3*3)^4)^5 ≈ 2×10^19 per resolution
    assert get_space("ofa-mbv3-w1.0").size() == (81 + 729 + 6561) ** 5 * 5


def test_json_round_trip_and_hashable(space):
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(50)]
    for a in archs:
        back = space.arch_from_dict(json.loads(json.dumps(a.to_dict())))
        assert back == a and hash(back) == hash(a)
    assert len(set(archs)) == len(archs)


def test_largest_smallest_bound_everything(space):
    rng = random.Random(1)
    for _ in range(100):
        a = space.sample(rng)
        assert space.contains(space.smallest(), a)
        assert space.contains(a, space.largest())


def test_contains_is_a_partial_order(space):
    rng = random.Random(2)
    archs = [space.sample(rng) for _ in range(60)]
    for a in archs:
        assert space.contains(a, a)
    for a in archs:
        for b in archs:
            if a != b and space.contains(a, b) and space.contains(b, a):
                assert a.ks == b.ks and a.e == b.e  # only resolution may differ


def test_contains_detects_each_gene():
    space = get_space("fashion-mbv3")
    ref = Arch(ks=((5, 5),) * 4, e=((3, 3),) * 4, resolution=28)
    bigger = Arch(ks=((5, 7, 3),) * 4, e=((3, 4, 2),) * 4, resolution=24)
    assert space.contains(ref, bigger)
    shallower = Arch(ks=((5,),) + ((5, 5),) * 3, e=((3,),) + ((3, 3),) * 3, resolution=28)
    assert not space.contains(ref, shallower)
    smaller_kernel = Arch(ks=((5, 3),) + ((5, 5),) * 3, e=((3, 3),) * 4, resolution=28)
    assert not space.contains(ref, smaller_kernel)
    smaller_expand = Arch(ks=((5, 5),) * 4, e=((3, 3),) * 3 + ((3, 2),), resolution=28)
    assert not space.contains(ref, smaller_expand)


def test_constrained_operators_never_leave_cas(space):
    rng = random.Random(3)
    for _ in range(30):
        ref = space.sample(rng)
        pop = [space.sample_containing(ref, rng) for _ in range(10)]
        for _ in range(20):
            a, b = rng.sample(pop, 2)
            child = space.crossover(a, b, rng)
            mutant = space.mutate_containing(ref, child, rng, 0.3)
            for x in (child, mutant):
                assert space.contains(ref, x)
                space.validate(x)
            pop.append(mutant)


def test_unconstrained_mutation_explores_every_gene():
    space = get_space("fashion-mbv3")
    rng = random.Random(4)
    a = space.smallest()
    seen_k, seen_e, seen_d, seen_r = set(), set(), set(), set()
    for _ in range(200):
        a = space.mutate(a, rng, 0.3)
        space.validate(a)
        seen_k |= {k for s in a.ks for k in s}
        seen_e |= {e for s in a.e for e in s}
        seen_d |= set(a.d)
        seen_r.add(a.resolution)
    p = space.preset
    assert seen_k == set(p.kernel_choices) and seen_e == set(p.expand_choices)
    assert seen_d == set(p.depth_choices) and seen_r == set(p.resolutions)


def test_sample_is_seeded(space):
    a = [space.sample(random.Random(9)) for _ in range(3)]
    assert a[0] == a[1] == a[2]


def test_ofa_round_trip():
    space = get_space("ofa-mbv3-w1.2")
    rng = random.Random(5)
    for _ in range(20):
        a = space.sample(rng)
        assert space.from_ofa(space.to_ofa(a), resolution=a.resolution) == a
    cfg = {"ks": [7] * 20, "e": [6] * 20, "d": [4] * 5}
    assert space.from_ofa(cfg, resolution=224) == space.largest()


def test_encoding_is_fixed_length_and_injective(space):
    rng = random.Random(6)
    archs = list({space.sample(rng) for _ in range(100)})
    codes = {tuple(space.encode(a)) for a in archs}
    assert len(codes) == len(archs)
    assert len({len(c) for c in codes}) == 1


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"resolution": 30, "ks": [[3]] * 4, "e": [[2]] * 4}, r"resolution 30 not in \[24, 28\]"),
        ({"resolution": 28, "ks": [[4]] * 4, "e": [[2]] * 4}, r"ks\[0\]\[0\]=4 not in \[3, 5, 7\]"),
        ({"resolution": 28, "ks": [[3]] * 4, "e": [[6]] * 4}, r"e\[0\]\[0\]=6 not in \[2, 3, 4\]"),
        (
            {"resolution": 28, "ks": [[3] * 4] * 4, "e": [[2] * 4] * 4},
            r"d\[0\]=4 not in \[1, 2, 3\]",
        ),
        ({"resolution": 28, "ks": [[3]] * 3, "e": [[2]] * 3}, "3 stages, the space has 4"),
        ({"ks": [[3]] * 4}, "expected keys resolution, d, ks, e"),
    ],
)
def test_arch_outside_space_names_gene(data, message):
    with pytest.raises(FamcError, match=message):
        get_space("fashion-mbv3").arch_from_dict(data)
