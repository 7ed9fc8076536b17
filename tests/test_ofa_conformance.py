"""famc's OFA presets must reproduce Once-for-All's own OFAMobileNetV3 sub-networks exactly."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from famc.space import flops, get_space, params
from famc.supernet import build_supernet, load_checkpoint, recalibrate
from tests.bn import randomise_bn
from tests.ofa_reference import import_ofa


@pytest.fixture(scope="module", params=[1.2, 1.0], ids=["w1.2", "w1.0"])
def pair(request, tmp_path_factory):
    OFAMobileNetV3, _ = import_ofa()
    width = request.param
    torch.manual_seed(0)
    ofa = OFAMobileNetV3(
        n_classes=1000, dropout_rate=0, width_mult=width, ks_list=[3, 5, 7],
        expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4],
    )  # fmt: skip
    randomise_bn(ofa, seed=1)
    ofa.eval()
    path = tmp_path_factory.mktemp("ofa") / f"ofa_w{width}.pth"
    torch.save(ofa.state_dict(), path)  # OFA's own key spelling (.bn.bn., .conv.conv.)
    space = get_space(f"ofa-mbv3-w{width}")
    net = build_supernet(space)
    load_checkpoint(net, path)
    return space, net.eval(), ofa


def _ofa_archs(space, n: int) -> list[dict]:
    rng = random.Random(7)
    out = [space.to_ofa(space.largest()), space.to_ofa(space.smallest())]
    for _ in range(n):
        out.append({"ks": [rng.choice([3, 5, 7]) for _ in range(20)],
                    "e": [rng.choice([3, 4, 6]) for _ in range(20)],
                    "d": [rng.choice([2, 3, 4]) for _ in range(5)]})  # fmt: skip
    return out


def test_state_dict_keys_cover_ofa(pair):
    space, net, ofa = pair
    from famc.supernet.checkpoint import normalise_key

    assert {normalise_key(k, space.preset) for k in ofa.state_dict()} == set(net.state_dict())


@torch.no_grad()
def test_extracted_subnets_match_ofa(pair):
    """Largest, smallest and 22 random architectures: max |Δlogits| ≤ 1e-5 against OFA."""
    space, net, ofa = pair
    g = torch.Generator().manual_seed(3)
    for cfg in _ofa_archs(space, 22):
        resolution = 160 + 16 * int(torch.randint(0, 5, (1,), generator=g))
        arch = space.from_ofa(cfg, resolution=resolution)
        ofa.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
        reference = ofa.get_active_subnet(preserve_weight=True).eval()
        x = torch.randn(2, 3, resolution, resolution, generator=g)
        ours = net.extract(arch)(x)
        assert (ours - reference(x)).abs().max().item() <= 1e-5, arch


def test_recalibration_matches_ofa_set_running_statistics(pair):
    _, set_running_statistics = import_ofa()
    space, net, ofa = pair
    cfg = _ofa_archs(space, 1)[-1]
    arch = space.from_ofa(cfg, resolution=160)
    ofa.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
    reference = ofa.get_active_subnet(preserve_weight=True)
    g = torch.Generator().manual_seed(5)
    batches = [torch.randn(n, 3, 160, 160, generator=g) for n in (8, 8, 5)]
    set_running_statistics(reference, [(b, None) for b in batches])
    ours = recalibrate(net.extract(arch), batches, convention="ofa")
    ref_bns = [m for m in reference.modules() if isinstance(m, nn.BatchNorm2d)]
    our_bns = [m for m in ours.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(ref_bns) == len(our_bns)
    for a, b in zip(our_bns, ref_bns, strict=True):
        assert torch.allclose(a.running_mean, b.running_mean, atol=1e-4, rtol=1e-4)
        assert torch.allclose(a.running_var, b.running_var, atol=1e-4, rtol=1e-4)


def test_flops_and_params_match_ofa_profile(pair):
    from ofa.utils.flops_counter import profile

    space, _, ofa = pair
    for cfg in _ofa_archs(space, 3):
        arch = space.from_ofa(cfg, resolution=192)
        ofa.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
        reference = ofa.get_active_subnet(preserve_weight=False)
        ofa_flops, ofa_params = profile(reference, (1, 3, 192, 192))
        assert flops(space, arch) == ofa_flops
        assert params(space, arch) == ofa_params
