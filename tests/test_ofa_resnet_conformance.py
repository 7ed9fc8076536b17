"""famc's ``ofa-resnet50`` must reproduce Once-for-All's own ``OFAResNets`` sub-networks exactly."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from famc.space import flops, get_space, params
from famc.supernet import build_supernet, load_checkpoint
from famc.supernet.checkpoint import normalise_key
from tests.bn import randomise_bn
from tests.ofa_reference import import_ofa_resnets


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    OFAResNets = import_ofa_resnets()
    torch.manual_seed(0)
    ofa = OFAResNets(n_classes=1000, dropout_rate=0, depth_list=[0, 1, 2],
                     expand_ratio_list=[0.2, 0.25, 0.35], width_mult_list=[0.65, 0.8, 1.0])  # fmt: skip
    randomise_bn(ofa, seed=1)
    ofa.eval()
    path = tmp_path_factory.mktemp("ofa") / "ofa_resnet50.pth"
    torch.save(ofa.state_dict(), path)  # OFA's own key spelling (.bn.bn., .conv.conv.)
    space = get_space("ofa-resnet50")
    net = build_supernet(space)
    load_checkpoint(net, path)
    return space, net.eval(), ofa


def _configs(ofa, n: int) -> list[dict]:
    """OFA's largest and smallest, then ``n`` of its own ``sample_active_subnet()`` draws."""
    largest = {"d": [2] * 5, "e": [0.35] * 18, "w": [2] * 6}
    smallest = {"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6}
    random.seed(7)
    return [largest, smallest] + [ofa.sample_active_subnet() for _ in range(n)]


def test_state_dict_keys_cover_ofa(pair):
    space, net, ofa = pair
    ours = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    theirs = {normalise_key(k, space.preset): tuple(v.shape) for k, v in ofa.state_dict().items()}
    assert theirs == ours and len(ours) == 368


def test_largest_and_smallest_are_ofas(pair):
    space, _, ofa = pair
    largest, smallest = _configs(ofa, 0)
    assert space.from_ofa(largest, resolution=224) == space.largest()
    assert space.from_ofa(smallest, resolution=128) == space.smallest()


@torch.no_grad()
def test_extracted_subnets_match_ofa(pair):
    """Largest, smallest and 20 of OFA's random configs: max |Δlogits| ≤ 1e-5 against OFA's
    ``get_active_subnet(preserve_weight=True)``, at resolutions with odd feature maps too."""
    space, net, ofa = pair
    g = torch.Generator().manual_seed(3)
    for i, cfg in enumerate(_configs(ofa, 20)):
        resolution = 224 if i == 0 else space.preset.resolutions[i % 2]  # 128, 144
        arch = space.from_ofa(cfg, resolution=resolution)
        assert space.from_ofa(space.to_ofa(arch), resolution=resolution) == arch
        ofa.set_active_subnet(**cfg)
        reference = ofa.get_active_subnet(preserve_weight=True).eval()
        x = torch.randn(1, 3, resolution, resolution, generator=g)
        assert (net.extract(arch)(x) - reference(x)).abs().max().item() <= 1e-5, cfg


def _macs(model: nn.Module, resolution: int) -> int:
    """OFA's ``count_convNd`` / ``count_linear`` rule in exact integers."""
    total = 0

    def hook(m: nn.Module, _inp, out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(m, nn.Conv2d):
            k = m.kernel_size[0] * m.kernel_size[1]
            total += m.in_channels * out.nelement() * k // m.groups
        else:
            total += m.in_features * m.out_features

    modules = [m for m in model.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    handles = [m.register_forward_hook(hook) for m in modules]
    with torch.no_grad():
        model(torch.zeros(1, 3, resolution, resolution))
    for h in handles:
        h.remove()
    return total


def test_flops_and_params_match_ofa_profile(pair):
    """Equal to OFA's counter: exactly to its rule, and to ``profile`` up to its float32 sums."""
    from ofa.utils.flops_counter import profile

    space, _, ofa = pair
    for cfg, resolution in zip(_configs(ofa, 2), (224, 128, 160, 208), strict=True):
        arch = space.from_ofa(cfg, resolution=resolution)
        ofa.set_active_subnet(**cfg)
        reference = ofa.get_active_subnet(preserve_weight=False)
        ofa_flops, ofa_params = profile(reference, (1, 3, resolution, resolution))
        assert flops(space, arch) == _macs(reference, resolution)
        assert params(space, arch) == sum(p.numel() for p in reference.parameters())
        assert flops(space, arch) == pytest.approx(ofa_flops, rel=1e-6)
        assert params(space, arch) == pytest.approx(ofa_params, rel=1e-6)


def test_published_sizes():
    """OFA's counter at 224: the largest 7491.64 MFLOPs / 48.1 M params, the smallest
    962.19 MFLOPs / 6.54 M params (OFAResNets ``d=0, e=0.2, w=0``)."""
    space = get_space("ofa-resnet50")
    smallest = space.from_ofa({"d": [0] * 5, "e": [0.2] * 18, "w": [0] * 6}, resolution=224)
    assert flops(space, space.largest()) == 7_491_643_904
    assert params(space, space.largest()) == 48_105_992
    assert flops(space, smallest) == 962_192_128
    assert params(space, smallest) == 6_539_280
