"""Supernet: extraction is exact, analytical cost matches a hook count, BN conventions, checkpoints."""

from __future__ import annotations

import random

import pytest
import torch
from torch import nn

from famc.errors import FamcError
from famc.space import flops, get_space, params
from famc.supernet import build_supernet, load_checkpoint, recalibrate, save_checkpoint
from tests.bn import randomise_bn


@pytest.fixture(scope="module")
def fashion():
    torch.manual_seed(0)
    space = get_space("fashion-mbv3")
    net = build_supernet(space)
    randomise_bn(net, 1)
    return space, net.eval()


@torch.no_grad()
@pytest.mark.parametrize("name", ["fashion-mbv3", "ofa-mbv3-w1.0"])
def test_extract_equals_supernet_with_arch_active(name):
    torch.manual_seed(0)
    space = get_space(name)
    net = build_supernet(space)
    randomise_bn(net, 2)
    if space.preset.kernel_transform == "matrix":
        for n, p in net.named_parameters():
            if n.endswith("_matrix"):
                p.add_(0.1 * torch.randn_like(p))
    net.eval()
    rng = random.Random(0)
    n = 40 if name == "fashion-mbv3" else 6
    archs = [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(n)]
    for arch in archs:
        x = torch.randn(2, space.preset.in_channels, arch.resolution, arch.resolution)
        net.set_active(arch)
        sub = net.extract(arch)
        assert not sub.training
        assert (sub(x) - net(x)).abs().max().item() <= 1e-6, arch


def test_extracted_weights_are_copies(fashion):
    space, net = fashion
    sub = net.extract(space.largest())
    before = net.first_conv.conv.weight.clone()
    with torch.no_grad():
        sub.layers[0].conv.weight.add_(1.0)
    assert torch.equal(net.first_conv.conv.weight, before)


def _hook_count(model: nn.Module, x: torch.Tensor) -> int:
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out):
        nonlocal total
        total += out.numel() // out.size(0) * (m.in_channels // m.groups) * m.kernel_size[0] ** 2

    def linear_hook(m: nn.Linear, _inp, out):
        nonlocal total
        total += m.in_features * m.out_features

    hooks = [
        m.register_forward_hook(conv_hook if isinstance(m, nn.Conv2d) else linear_hook)
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
    ]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return total


@pytest.mark.parametrize("name", ["fashion-mbv3", "ofa-mbv3-w1.2"])
def test_analytical_flops_and_params_match_hooks(name):
    space = get_space(name)
    net = build_supernet(space)
    rng = random.Random(1)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(5)]:
        sub = net.extract(arch)
        x = torch.randn(1, space.preset.in_channels, arch.resolution, arch.resolution)
        assert flops(space, arch) == _hook_count(sub, x)
        assert params(space, arch) == sum(p.numel() for p in sub.parameters())


def _batches(seed: int, sizes=(16, 16, 7)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 1, 28, 28, generator=g) for n in sizes]


@torch.no_grad()
def test_bn_conventions(fashion):
    space, net = fashion
    arch = space.largest()
    batches = _batches(0)
    first_bn = lambda m: m.layers[0].bn  # noqa: E731 - its input is the stem conv output, easy to recompute
    conv_out = [net.extract(arch).layers[0].conv(b) for b in batches]

    ofa = first_bn(recalibrate(net.extract(arch), batches, "ofa"))
    n = torch.tensor([len(b) for b in batches], dtype=torch.float64)
    means = torch.stack([c.double().mean((0, 2, 3)) for c in conv_out])
    biased = torch.stack([c.double().var((0, 2, 3), unbiased=False) for c in conv_out])
    assert torch.allclose(
        ofa.running_mean.double(), (means * n[:, None]).sum(0) / n.sum(), atol=1e-6
    )
    assert torch.allclose(
        ofa.running_var.double(), (biased * n[:, None]).sum(0) / n.sum(), atol=1e-6
    )

    torch_conv = first_bn(recalibrate(net.extract(arch), batches, "torch"))
    unbiased = torch.stack([c.double().var((0, 2, 3), unbiased=True) for c in conv_out])
    assert torch.allclose(torch_conv.running_mean.double(), means.mean(0), atol=1e-6)
    assert torch.allclose(torch_conv.running_var.double(), unbiased.mean(0), atol=1e-5)

    pooled = first_bn(recalibrate(net.extract(arch), batches, "pooled"))
    everything = torch.cat(conv_out).double()
    assert torch.allclose(pooled.running_mean.double(), everything.mean((0, 2, 3)), atol=1e-6)
    assert torch.allclose(
        pooled.running_var.double(), everything.var((0, 2, 3), unbiased=False), atol=1e-5
    )


def test_recalibration_leaves_parameters_and_returns_eval(fashion):
    space, net = fashion
    sub = net.extract(space.smallest())
    before = {k: v.clone() for k, v in sub.named_parameters()}
    out = recalibrate(sub, _batches(1))
    assert not out.training
    for k, v in out.named_parameters():
        assert torch.equal(v, before[k])
    with pytest.raises(ValueError, match="unknown BN convention"):
        recalibrate(sub, _batches(1), "median")  # type: ignore[arg-type]


def test_safetensors_round_trip(tmp_path, fashion):
    space, net = fashion
    path = tmp_path / "w.safetensors"
    save_checkpoint(net, path, {"space": space.name})
    other = build_supernet(space)
    assert load_checkpoint(other, path)["space"] == space.name
    for (k, a), (_, b) in zip(net.state_dict().items(), other.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert not list(tmp_path.glob(".*tmp*"))


def test_checkpoint_of_another_preset_is_refused(tmp_path, fashion):
    space, net = fashion
    path = tmp_path / "w.safetensors"
    save_checkpoint(net, path, {"space": space.name})
    with pytest.raises(FamcError, match="trained for space 'fashion-mbv3', not 'ofa-mbv3-w1.0'"):
        load_checkpoint(build_supernet(get_space("ofa-mbv3-w1.0")), path)


def test_mismatched_shape_names_key_and_both_shapes(tmp_path, fashion):
    space, net = fashion
    state = net.state_dict()
    state["first_conv.conv.weight"] = torch.zeros(8, 1, 3, 3)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(
        FamcError, match=r"first_conv.conv.weight has shape \(8, 1, 3, 3\) in the file but "
        r"\(16, 1, 3, 3\) in the model"
    ):  # fmt: skip
        load_checkpoint(build_supernet(space), path)


def test_missing_and_unexpected_keys(tmp_path, fashion):
    space, net = fashion
    state = net.state_dict()
    del state["classifier.linear.bias"]
    torch.save(state, tmp_path / "missing.pth")
    with pytest.raises(FamcError, match="missing key 'classifier.linear.bias'"):
        load_checkpoint(build_supernet(space), tmp_path / "missing.pth")
    state = net.state_dict()
    state["extra.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(FamcError, match="unexpected key 'extra.weight'"):
        load_checkpoint(build_supernet(space), tmp_path / "extra.pth")


def test_pickled_objects_are_never_loaded(tmp_path, fashion):
    space, _ = fashion

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(FamcError, match="weights-only"):
        load_checkpoint(build_supernet(space), tmp_path / "evil.pth")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(FamcError, match="not a readable safetensors file"):
        load_checkpoint(build_supernet(space), tmp_path / "junk.safetensors")


@torch.no_grad()
def test_fold_bn_is_exact(fashion):
    from famc.supernet.static import fold_bn

    space, net = fashion
    rng = random.Random(3)
    for arch in [space.largest(), space.smallest(), space.sample(rng)]:
        x = torch.randn(4, 1, arch.resolution, arch.resolution)
        ref = net.extract(arch)(x)
        folded = fold_bn(net.extract(arch))
        assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
        assert (folded(x) - ref).abs().max().item() <= 1e-5
