"""Elastic widths, per-stage genes and skippable stages (OFA-ResNet, AttentiveNAS): CAS's fourth
operation, the weights a containing member really holds, and the layers a space can deploy."""

from __future__ import annotations

import itertools
import random

import pytest
import torch
from torch import nn

from famc.errors import FamcError
from famc.latency import all_signatures
from famc.space import Arch, SearchSpace, describe, flops, get_space, params
from famc.space.presets import _an_stage, _attentivenas, _ofa_resnet
from famc.supernet import build_supernet
from tests.bn import randomise_bn
from tests.test_supernet import _hook_count

NEW = ["fashion-resnet", "fashion-attentivenas"]


def test_contains_compares_widths_as_prefixes():
    space = get_space("fashion-attentivenas")
    small = space.smallest()
    wider = Arch(small.ks, small.e, small.resolution, (24,) + small.w[1:])
    assert space.contains(small, wider) and not space.contains(wider, small)
    narrower_head = Arch(small.ks, small.e, small.resolution, wider.w[:-1] + (160,))
    assert space.contains(narrower_head, wider)
    assert not space.contains(Arch(small.ks, small.e, 28, wider.w[:-1] + (192,)), wider)


@pytest.mark.parametrize("name", NEW)
def test_operators_respect_widths_and_stage_genes(name):
    """Every width of a containing architecture is ≥ the reference's; AttentiveNAS stages stay
    uniform; mutation reaches every width choice and crossover takes each width from a parent."""
    space = get_space(name)
    rng = random.Random(0)
    seen: list[set[int]] = [set() for _ in space.widths]
    for _ in range(40):
        ref = space.sample(rng)
        a, b = space.sample_containing(ref, rng), space.sample_containing(ref, rng)
        child = space.crossover(a, b, rng)
        mutant = space.mutate_containing(ref, child, rng, 0.5)
        for x in (a, b, child, mutant):
            space.validate(x)  # uniform stages where the space draws genes per stage
            assert all(w >= r for w, r in zip(x.w, ref.w, strict=True))
        assert all(c in (x, y) for c, x, y in zip(child.w, a.w, b.w, strict=True))
        for j, w in enumerate(mutant.w):
            seen[j].add(w)
    assert seen == [set(c) for c in space.widths]


def test_ofa_resnet_config_format():
    """OFAResNets' ``d`` (stem residual kept only at the largest value, then extra blocks),
    ``e`` per supernet block and ``w`` width-multiplier indices, both ways."""
    space = get_space("ofa-resnet50")
    rng = random.Random(5)
    for _ in range(20):
        a = space.sample(rng)
        assert space.from_ofa(space.to_ofa(a), resolution=a.resolution) == a
    cfg = space.to_ofa(space.largest())
    assert cfg == {"d": [2] * 5, "e": [0.35] * 18, "w": [2] * 6}
    stemless = space.from_ofa(cfg | {"d": [1, 2, 2, 2, 2], "w": [1, 0, 2, 2, 2, 2]}, resolution=128)
    assert stemless.d == (0, 4, 4, 6, 4) and stemless.w[:2] == (24, 40)
    with pytest.raises(FamcError, match="needs 5 d, 18 e, 6 w entries; got 4, 18, 6"):
        space.from_ofa(cfg | {"d": [2] * 4}, resolution=224)
    with pytest.raises(FamcError, match="width indices"):
        space.from_ofa(cfg | {"w": [3] * 6}, resolution=224)
    with pytest.raises(FamcError, match=r"e\[1\]\[0\]=0.3 not in \[0.2, 0.25, 0.35\]"):
        space.from_ofa(cfg | {"e": [0.3] * 18}, resolution=224)


def _slice_of(small: torch.Tensor, big: torch.Tensor) -> torch.Tensor:
    """``big`` cut to ``small``'s shape: channel prefixes, centred kernels (the crop transform)."""
    index = []
    for dim, (s, b) in enumerate(zip(small.shape, big.shape, strict=True)):
        start = (b - s) // 2 if dim >= 2 else 0
        index.append(slice(start, start + s))
    return big[tuple(index)]


@pytest.mark.parametrize("name", NEW)
@torch.no_grad()
def test_containing_member_holds_the_smaller_ones_weights(name):
    """Extract a reference and architectures containing it: every tensor of the small member is
    a slice of the big member's tensor at the same slot, except an AttentiveNAS shortcut 1×1
    conv where the small block changes width and the big block (its widths grown equal) does not."""
    torch.manual_seed(0)
    space = get_space(name)
    net = build_supernet(space)
    randomise_bn(net, 1)
    rng = random.Random(1)
    exceptions = 0
    for _ in range(12):
        ref = space.sample(rng)
        big = space.sample_containing(ref, rng)
        small_layers, big_layers = describe(space, ref), describe(space, big)
        by_slot = {
            spec.module: (spec, layer)
            for spec, layer in zip(big_layers, net.extract(big).layers, strict=True)
        }
        for spec, layer in zip(small_layers, net.extract(ref).layers, strict=True):
            big_spec, big_layer = by_slot[spec.module]
            theirs = big_layer.state_dict()
            for key, tensor in layer.state_dict().items():
                if key not in theirs:
                    assert key == "shortcut.conv.weight" and big_spec.in_c == big_spec.out_c
                    exceptions += 1
                    continue
                assert torch.equal(tensor, _slice_of(tensor, theirs[key])), (spec.module, key)
    assert exceptions < 12  # rare: only where consecutive stages' width choices overlap


@pytest.mark.parametrize("name", NEW)
@torch.no_grad()
def test_extract_equals_supernet_and_costs_equal_hooks(name):
    torch.manual_seed(0)
    space = get_space(name)
    net = build_supernet(space)
    randomise_bn(net, 2)
    net.eval()
    rng = random.Random(0)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(12)]:
        x = torch.randn(2, 1, arch.resolution, arch.resolution)
        net.set_active(arch)
        sub = net.extract(arch)
        assert (sub(x) - net(x)).abs().max().item() <= 1e-5, arch
        assert flops(space, arch) == _hook_count(sub, x[:1])
        assert params(space, arch) == sum(p.numel() for p in sub.parameters())


# --- every layer a space can deploy ----------------------------------------------------------
def _every_arch(space: SearchSpace) -> list[Arch]:
    """Brute force: every combination of every gene (a tiny space only)."""
    p = space.preset
    per_stage = []
    for stage in p.stages:
        options = []
        for d in p.depths(stage):
            n = d if p.genes_per == "layer" else min(d, 1)
            for ks in itertools.product(p.kernel_choices, repeat=n):
                for es in itertools.product(p.expands(stage), repeat=n):
                    options.append((space._spread(list(ks), d), space._spread(list(es), d)))
        per_stage.append(options)
    return [
        Arch(tuple(s[0] for s in stages), tuple(s[1] for s in stages), r, w)
        for r in p.resolutions
        for w in itertools.product(*space.widths)
        for stages in itertools.product(*per_stage)
    ]


TINY = {
    "resnet": _ofa_resnet(
        "tiny-resnet", 1, 4, stem_stride=1, stem_width=24, stage_widths=(16, 32),
        base_depths=(1, 1), strides=(1, 2), width_mults=(0.65, 1.0), expands=(0.25, 0.35),
        resolutions=(11, 16),
    ),
    "attentivenas": _attentivenas(
        "tiny-attentivenas", 1, 4, stem=(8, 16),
        stages=(_an_stage((8, 16), (1, 2), (1,), 1, False),
                _an_stage((16, 24), (1, 2), (4, 6), 2, True)),
        feature_mix=(16, 24), resolutions=(9, 16),
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(TINY))
def test_all_signatures_is_exactly_what_every_arch_uses(name):
    space = SearchSpace(TINY[name])
    archs = _every_arch(space)
    assert len(archs) == space.size()
    used = {layer.signature() for a in archs for layer in describe(space, a)}
    assert set(all_signatures(space)) == used


@pytest.mark.parametrize("name", list(TINY))
@torch.no_grad()
def test_odd_sizes_and_skipped_stages_run(name):
    """Odd feature maps (ceil-mode and padded shortcut pools) and a skipped stem residual: the
    extracted model equals the supernet on every architecture of a tiny space."""
    torch.manual_seed(0)
    space = SearchSpace(TINY[name])
    net = build_supernet(space)
    randomise_bn(net, 3)
    net.eval()
    for arch in random.Random(0).sample(_every_arch(space), 30):
        x = torch.randn(2, 1, arch.resolution, arch.resolution)
        net.set_active(arch)
        sub = net.extract(arch)
        assert (sub(x) - net(x)).abs().max().item() <= 1e-5, arch
        assert not any(isinstance(m, nn.BatchNorm2d) and m.training for m in sub.modules())
