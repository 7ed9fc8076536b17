"""famc.train.standalone: stand-alone training learns, repeats exactly, and re-initialises weights."""

from __future__ import annotations

import importlib.util
import math
import random
from pathlib import Path

import pytest
import torch
from torch import nn

from famc.data import load_dataset
from famc.space import flops, get_space
from famc.supernet import build_supernet
from famc.train.standalone import (
    StandaloneRecipe,
    init_model,
    lr_at,
    pack_correct,
    train_standalone,
    unpack_correct,
)

# 180 training images: batch 8 gives 22 steps an epoch, enough for BN running statistics to settle
# (eval mode uses them); one thread keeps the runs fast and bitwise repeatable on a busy host.
RECIPE = StandaloneRecipe(epochs=2, batch_size=8, lr=0.05, warmup_epochs=0.3, seed=0, threads=1)


@pytest.fixture(scope="module")
def space():
    return get_space("fashion-mbv3")


@pytest.fixture(scope="module")
def data(tiny_folder):
    return load_dataset(
        "folder", root=tiny_folder, image_size=28, channels=1, search_size=20, calib_size=20
    )


def test_training_beats_chance_by_far(space, data) -> None:
    result = train_standalone(space, space.smallest(), data, RECIPE)
    assert len(data.test) == 40 and result.n_test == 40
    assert result.top1 >= 60.0  # chance is 10 %
    assert [row["epoch"] for row in result.log] == [1, 2]
    assert result.log[-1]["loss"] < result.log[0]["loss"]
    assert result.flops == flops(space, space.smallest()) and result.params > 0


def test_same_seed_same_result_other_seed_differs(space, data) -> None:
    arch = space.sample(random.Random(3))
    a = train_standalone(space, arch.to_dict(), data, RECIPE)  # the JSON form is accepted too
    torch.manual_seed(123)  # the global RNG must not matter
    b = train_standalone(space, arch, data, RECIPE)
    assert a.arch == b.arch == arch.to_dict()
    assert (a.top1, a.correct) == (b.top1, b.correct)
    assert [r["loss"] for r in a.log] == [r["loss"] for r in b.log]
    c = train_standalone(space, arch, data, StandaloneRecipe(**{**RECIPE.to_dict(), "seed": 1}))
    assert [r["loss"] for r in c.log] != [r["loss"] for r in a.log]


def test_correctness_vector_round_trips(space, data) -> None:
    result = train_standalone(space, space.smallest(), data, RECIPE)
    vec = result.correct_vector()
    assert vec.dtype == torch.bool and vec.numel() == 40
    assert math.isclose(100.0 * vec.float().mean().item(), result.top1, abs_tol=1e-3)
    odd = torch.tensor([True, False, True, True, False, False, True, False, True, True, False])
    assert torch.equal(unpack_correct(pack_correct(odd), odd.numel()), odd)


def _depthwise_z(model: nn.Module) -> list[torch.Tensor]:
    """Each depthwise conv's weights divided by the Kaiming fan-out std of its *own* shape."""
    return [
        m.weight.detach().flatten() / math.sqrt(2.0 / (m.weight[:, 0].numel()))
        for m in model.modules()
        if isinstance(m, nn.Conv2d) and m.groups > 1
    ]


def test_reinit_follows_own_shapes_not_supernet_slice(space) -> None:
    arch = space.smallest()  # 3x3 kernels, expand 2: far from the supernet's 7x7, expand 4
    torch.manual_seed(0)
    sliced = build_supernet(space).extract(arch)
    fresh = init_model(space, arch, seed=0)
    assert 0.9 < torch.cat(_depthwise_z(fresh)).std().item() < 1.1
    # a supernet slice keeps the 7x7 / widest-expansion scale: ≈ sqrt(9·mid / (49·mid_max)) ≈ 0.3
    # (the fixed first block is no slice, hence the median over layers)
    assert torch.tensor([z.std().item() for z in _depthwise_z(sliced)]).median() < 0.45
    (head,) = [m for m in fresh.modules() if isinstance(m, nn.Linear)]
    assert head.weight.abs().max() <= 1 / math.sqrt(head.in_features)
    assert head.weight.std() > 0.5 / math.sqrt(3 * head.in_features)  # uniform: 1/sqrt(3·in)
    assert not head.bias.any()
    for m in fresh.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all() and (m.bias == 0).all())
            assert bool((m.running_mean == 0).all() and (m.running_var == 1).all())
    torch.manual_seed(99)  # the init depends on the seed argument only
    again = init_model(space, arch, seed=0)
    pairs = zip(fresh.state_dict().values(), again.state_dict().values(), strict=True)
    assert all(torch.equal(x, y) for x, y in pairs)


def test_lr_schedule_warms_up_then_decays_to_zero() -> None:
    lrs = [lr_at(s, 100, 10, 0.1) for s in range(101)]
    assert lrs[0] == pytest.approx(0.01) and lrs[9] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[100] == pytest.approx(0.0, abs=1e-12)


def test_bench_selection_is_fixed_and_spans_the_ends(space) -> None:
    path = Path(__file__).resolve().parents[1] / "bench" / "standalone_truth.py"
    spec = importlib.util.spec_from_file_location("standalone_truth", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    archs = bench.select_archs(space, 24)
    assert archs == bench.select_archs(space, 24)
    assert len(set(archs)) == 24
    assert archs[0] == space.smallest() and archs[-1] == space.largest()
    costs = [flops(space, a) for a in archs]
    assert costs == sorted(costs)
