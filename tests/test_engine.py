"""The evaluation engine against a plainly written reference, and its slicing and racing.

The reference follows Once-for-All's convention step by step: extract the sub-network, replace every
BN's forward by one that normalises with the batch's own mean and biased variance while averaging
them (weighted by batch size) over the calibration images, install those averages as running
statistics, then predict in eval mode, NCHW, without folding. An engine that skipped or changed any
step (no re-calibration, unbiased variances, other calibration images) gives other logits.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from famc.data import load_dataset
from famc.device import resolve_device
from famc.errors import FamcError
from famc.evaluate import engine
from famc.evaluate.engine import Evaluator
from famc.evaluate.tree import PrefixTree
from famc.search.race import Race
from famc.space import describe, get_space
from famc.supernet import build_supernet, fold_bn, load_checkpoint, recalibrate

SPACE = get_space("fashion-mbv3")
SUPERNET = Path(__file__).resolve().parents[1] / "examples/fashion/supernet/supernet.safetensors"


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    net = build_supernet(SPACE)
    load_checkpoint(net, SUPERNET)
    data = load_dataset("fashion-mnist")
    calib, test = data.calib.subset(range(600)), data.test.subset(range(1000))
    ev = Evaluator(net.eval(), calib, data.mean, data.std, batch_size=200)
    archs = [SPACE.largest(), SPACE.smallest(), SPACE.sample(random.Random(3))]
    return net, data, calib, test, ev, archs


def _preprocess(x: torch.Tensor, resolution: int, mean, std) -> torch.Tensor:
    x = x.float() / 255
    if x.shape[-1] != resolution:
        x = nn.functional.interpolate(x, size=resolution, mode="bilinear", align_corners=False)
    m, s = torch.tensor(mean)[:, None, None], torch.tensor(std)[:, None, None]
    return (x - m) / s


@torch.no_grad()
def reference_logits(net, arch, calib, test, mean, std, batch: int) -> torch.Tensor:
    sub = net.extract(arch)
    sums: dict[nn.BatchNorm2d, list] = {}

    def calibrating(bn: nn.BatchNorm2d):
        def forward(x):
            m = x.mean(dim=(0, 2, 3))
            v = ((x - m[None, :, None, None]) ** 2).mean(dim=(0, 2, 3))
            acc = sums.setdefault(bn, [0.0, 0.0, 0])
            acc[0], acc[1], acc[2] = (
                acc[0] + m * x.size(0),
                acc[1] + v * x.size(0),
                acc[2] + x.size(0),
            )
            return nn.functional.batch_norm(x, m, v, bn.weight, bn.bias, False, 0.0, bn.eps)

        return forward

    bns = [m for m in sub.modules() if isinstance(m, nn.BatchNorm2d)]
    for bn in bns:
        bn.forward = calibrating(bn)
    sub.eval()
    for start in range(0, len(calib), batch):
        sub(_preprocess(calib.images[start : start + batch], arch.resolution, mean, std))
    for bn in bns:
        del bn.forward  # back to the class's forward
        total_m, total_v, n = sums[bn]
        bn.running_mean.copy_(total_m / n)
        bn.running_var.copy_(total_v / n)
    return torch.cat([
        sub(_preprocess(test.images[s : s + batch], arch.resolution, mean, std))
        for s in range(0, len(test), batch)
    ])  # fmt: skip


def test_engine_logits_equal_the_plain_reference(setup):
    net, data, calib, test, ev, archs = setup
    for arch in archs:
        ours = ev.logits(fold_bn(ev.model(arch)), test, arch.resolution)
        ref = reference_logits(net, arch, calib, test, data.mean, data.std, batch=200)
        assert torch.allclose(ours, ref, atol=2e-3, rtol=1e-3), (arch, (ours - ref).abs().max())
        agree = (ours.argmax(1) == ref.argmax(1)).float().mean().item()
        assert agree >= 0.998  # a near-tie may flip; anything else is a bug
        assert torch.equal(ev.correct(arch, test), ours.argmax(1) == test.labels)


def test_skipping_recalibration_is_detected(setup):
    """The reference is sharp: the stored shared statistics give clearly different logits."""
    net, data, calib, test, ev, archs = setup
    arch = archs[2]
    stale = net.extract(arch).eval()
    with torch.no_grad():
        logits = torch.cat([stale(_preprocess(test.images[s : s + 200], arch.resolution, data.mean,
                                              data.std)) for s in range(0, len(test), 200)])  # fmt: skip
    ref = reference_logits(net, arch, calib, test, data.mean, data.std, batch=200)
    assert (logits - ref).abs().max() > 0.1


def test_slices_assemble_to_the_one_pass_vector(setup):
    _, _, _, test, ev, archs = setup
    arch = archs[2]
    whole = ev.correct(arch, test)
    model = fold_bn(ev.model(arch))
    parts = [ev.logits(model, test, arch.resolution, a, b) for a, b in ((0, 400), (400, 1000))]
    assert torch.equal(torch.cat(parts).argmax(1) == test.labels, whole)
    assert torch.equal(ev.correct(arch, test, done=whole[:400]), whole)  # a cached prefix resumes
    with pytest.raises(ValueError, match="not aligned"):
        ev.logits(model, test, arch.resolution, 100, 1000)


def test_race_stops_after_its_slice_or_runs_to_the_end(setup):
    _, _, _, test, ev, archs = setup
    worse, better = sorted(archs[:2], key=lambda a: ev.correct(a, test)[:400].sum().item())
    full_worse, full_better = ev.correct(worse, test), ev.correct(better, test)
    assert full_better[:400].sum() > full_worse[:400].sum() + 10  # clearly apart on the slice

    def race(bar: torch.Tensor) -> Race:
        return Race.against(bar, [], 400, 1.0, 0.0, 2.33)

    stopped = ev.correct(worse, test, race(full_better))
    assert torch.equal(stopped, full_worse[:400])  # the prefix, nothing more
    assert torch.equal(ev.correct(better, test, race(full_worse)), full_better)


def test_cuda_is_refused_clearly_where_there_is_none(setup):
    net, data, calib, _, _, _ = setup
    if torch.cuda.is_available():
        pytest.skip("this host has CUDA: the refusal applies to CPU-only hosts")
    with pytest.raises(FamcError, match="evaluation.device: CUDA is not available here"):
        resolve_device("cuda", "evaluation.device", "use cpu")
    assert resolve_device("auto", "evaluation.device", "use cpu") == torch.device("cpu")
    with pytest.raises(FamcError, match="evaluation.amp needs evaluation.device `cuda`"):
        Evaluator(net, calib, data.mean, data.std, amp=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (GPU path)")
def test_cuda_evaluator_agrees_with_the_cpu_one(setup):
    net, data, calib, test, ev, archs = setup
    gpu = Evaluator(net, calib, data.mean, data.std, batch_size=200, device="cuda")
    amp = Evaluator(net, calib, data.mean, data.std, batch_size=200, device="cuda", amp=True)
    assert next(net.parameters()).device.type == "cpu"  # the caller's supernet stays put
    for arch in archs:
        cpu_logits = ev.logits(fold_bn(ev.model(arch)), test, arch.resolution)
        gpu_logits = gpu.logits(fold_bn(gpu.model(arch)), test, arch.resolution).cpu()
        assert torch.allclose(cpu_logits, gpu_logits, atol=1e-2, rtol=1e-3)
        base = ev.correct(arch, test)
        assert (gpu.correct(arch, test) == base).float().mean() >= 0.998
        assert (amp.correct(arch, test) == base).float().mean() >= 0.99


def test_a_generation_shares_its_prefixes_and_each_vector_is_its_own(setup):
    """Candidates that begin alike (mutants of one parent, two resolutions) are evaluated as one
    prefix tree per resolution; each vector equals that architecture's own forward pass, also
    under a race and when resuming cached prefixes."""
    _, _, _, test, ev, archs = setup
    rng = random.Random(5)
    parent = archs[2]
    family = [parent, SPACE.mutate(parent, rng, 0.1), SPACE.mutate(parent, rng, 0.1),
              archs[0], archs[1]]  # fmt: skip
    family += [replace(family[1], resolution=r) for r in SPACE.preset.resolutions
               if r != family[1].resolution]  # fmt: skip
    own = [ev.logits(fold_bn(ev.model(a)), test, a.resolution).argmax(1) == test.labels
           for a in family]  # fmt: skip
    assert all(torch.equal(v, w) for v, w in zip(ev.correct_many(family, test), own, strict=True))
    done = [None, own[1][:400], None, own[3], None, None]
    resumed = ev.correct_many(family, test, done=done)
    assert all(torch.equal(v, w) for v, w in zip(resumed, own, strict=True))
    bar = max(own, key=lambda v: v[:400].sum().item())
    raced = ev.correct_many(family, test, Race.against(bar, [], 400, 1.0, 0.0, 0.0))
    for v, w in zip(raced, own, strict=True):
        assert torch.equal(v, w) if v.numel() == len(test) else torch.equal(v, w[:400])
    assert any(v.numel() == 400 for v in raced)  # z = 0: every candidate below the bar stops

    trees: dict[int, PrefixTree] = {}
    for i, a in enumerate(family):
        trees.setdefault(a.resolution, PrefixTree()).add(i, describe(SPACE, a), ev.net.extract(a))
    distinct = {(a.resolution, tuple(describe(SPACE, a)[:k + 1]))
                for a in family for k in range(len(describe(SPACE, a)))}  # fmt: skip
    assert sum(len(t.nodes) for t in trees.values()) == len(distinct)
    assert len(distinct) < sum(len(describe(SPACE, a)) for a in family)  # something is shared


def test_calibration_without_batches_is_refused():
    with pytest.raises(ValueError, match="at least one batch"):
        recalibrate(build_supernet(SPACE).extract(SPACE.smallest()), [])


def test_a_large_generation_is_split_into_several_trees(setup, monkeypatch):
    """Grouping by weight budget keeps order and changes no vector."""
    assert engine._groups([5, 5, 5, 20, 1], 10) == [[0, 1], [2], [3], [4]]
    _, _, _, test, ev, archs = setup
    whole = ev.correct_many(archs, test)
    monkeypatch.setattr(engine, "TREE_PARAMS", 1)  # one candidate per tree
    split = ev.correct_many(archs, test)
    assert all(torch.equal(a, b) for a, b in zip(whole, split, strict=True))
