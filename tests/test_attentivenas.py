"""``attentivenas``: the AttentiveNAS repository's configuration format, its supernet checkpoints,
and the published AttentiveNAS-A0 … A6 models' MFLOPs.

AttentiveNAS has no installable reference, so the reference enters as data: its supernet's
state-dict keys and shapes (``tests/data/attentivenas_supernet_shapes.json.gz``, listed from
``AttentiveNasDynamicModel`` built with ``configs/train_attentive_nas_models.yml`` of
facebookresearch/AttentiveNAS@c4c16f1) and the A0 … A6 configurations of its
``configs/eval_attentive_nas_models.yml``. With a checkout of that repository in
``$FAMC_ATTENTIVENAS_REPO``, ``test_logits_match_the_reference`` also compares logits.
"""

from __future__ import annotations

import gzip
import json
import os
import random
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from famc.errors import FamcError
from famc.space import flops, get_space, params
from famc.supernet import build_supernet, load_checkpoint
from famc.supernet.checkpoint import normalise_key
from tests.test_supernet import _hook_count

SHAPES = Path(__file__).parent / "data" / "attentivenas_supernet_shapes.json.gz"

# name: (config, MFLOPs in the paper's Table 1)
PUBLISHED = {
    "a0": ({"resolution": 192, "width": [16, 16, 24, 32, 64, 112, 192, 216, 1792],
            "kernel_size": [3, 3, 3, 3, 3, 3, 3], "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
            "depth": [1, 3, 3, 3, 3, 3, 1]}, 203),
    "a1": ({"resolution": 224, "width": [16, 16, 24, 32, 64, 112, 192, 216, 1984],
            "kernel_size": [3, 3, 3, 5, 3, 5, 3], "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
            "depth": [1, 3, 3, 3, 3, 3, 1]}, 279),
    "a2": ({"resolution": 224, "width": [16, 16, 24, 32, 64, 112, 200, 224, 1984],
            "kernel_size": [3, 3, 3, 3, 3, 5, 3], "expand_ratio": [1, 4, 5, 4, 4, 6, 6],
            "depth": [1, 3, 3, 3, 3, 4, 1]}, 317),
    "a3": ({"resolution": 224, "width": [16, 16, 24, 32, 64, 112, 208, 224, 1984],
            "kernel_size": [3, 3, 3, 5, 3, 3, 3], "expand_ratio": [1, 4, 4, 4, 4, 6, 6],
            "depth": [2, 3, 3, 4, 3, 5, 1]}, 357),
    "a4": ({"resolution": 256, "width": [16, 16, 24, 32, 64, 112, 192, 216, 1984],
            "kernel_size": [3, 3, 3, 5, 3, 5, 3], "expand_ratio": [1, 4, 4, 5, 4, 6, 6],
            "depth": [1, 3, 3, 4, 3, 5, 1]}, 444),
    "a5": ({"resolution": 256, "width": [16, 16, 24, 32, 72, 112, 192, 216, 1792],
            "kernel_size": [3, 3, 3, 5, 3, 3, 3], "expand_ratio": [1, 4, 5, 4, 4, 6, 6],
            "depth": [1, 3, 3, 3, 4, 6, 1]}, 491),
    "a6": ({"resolution": 288, "width": [16, 16, 24, 32, 64, 112, 216, 224, 1984],
            "kernel_size": [3, 3, 3, 3, 3, 5, 3], "expand_ratio": [1, 4, 6, 5, 4, 6, 6],
            "depth": [1, 3, 3, 4, 4, 6, 1]}, 709),
}  # fmt: skip


@pytest.fixture(scope="module")
def space():
    return get_space("attentivenas")


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_models_have_the_papers_mflops(space, name):
    """Table 1 within 3 % (in fact within 0.2 %): MACs of every conv (SE and shortcut 1×1s
    included) and of the classifier, AttentiveNAS's own counting convention."""
    cfg, paper = PUBLISHED[name]
    arch = space.from_attentivenas(cfg)
    assert space.to_attentivenas(arch) == cfg
    assert flops(space, arch) / 1e6 == pytest.approx(paper, rel=0.03)
    assert abs(flops(space, arch) / 1e6 - paper) / paper < 0.002


def test_smallest_is_a0_and_counts_equal_hooks(space):
    a0 = space.from_attentivenas(PUBLISHED["a0"][0])
    assert a0 == space.smallest() and flops(space, a0) == 203_389_568
    largest = space.to_attentivenas(space.largest())
    assert largest["width"] == [24, 24, 32, 40, 72, 128, 216, 224, 1984]
    assert largest["depth"] == [2, 5, 6, 6, 8, 8, 2]
    sub = build_supernet(space).extract(a0)
    assert flops(space, a0) == _hook_count(sub, torch.randn(1, 3, 192, 192))
    assert params(space, a0) == sum(p.numel() for p in sub.parameters())


def _reference_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """A state dict with the reference checkpoint's keys (``module.`` + every key, as
    ``load_weights_from_pretrained_models`` reads them) and shapes, filled with random values."""
    g = torch.Generator().manual_seed(0)
    shapes = json.loads(gzip.decompress(SHAPES.read_bytes()))
    state = {
        f"module.{k}": torch.randint(0, 9, shape, generator=g) if k.endswith("num_batches_tracked")
        else torch.randn(shape, generator=g)
        for k, shape in shapes.items()
    }  # fmt: skip
    torch.save({"state_dict": state, "epoch": 360}, path)
    return state


def test_reference_checkpoint_loads_as_it_is(space, tmp_path):
    state = _reference_checkpoint(tmp_path / "attentive_nas_pretrained.pth.tar")
    net = build_supernet(space)
    load_checkpoint(net, tmp_path / "attentive_nas_pretrained.pth.tar")
    ours = net.state_dict()
    loaded = {normalise_key(k, space.preset): v for k, v in state.items() if "bn_tracking" not in k}
    assert len(state) == 1468 and set(loaded) == set(ours)  # every famc tensor comes from the file
    for name, value in loaded.items():
        assert torch.equal(ours[name], value), name


def test_checkpoint_with_a_wrong_shape_names_the_key(space, tmp_path):
    state = _reference_checkpoint(tmp_path / "bad.pth")
    state["module.blocks.3.mobile_inverted_conv.point_linear.conv.conv.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(FamcError, match=r"blocks\.3\.point_linear\.conv\.weight has shape"):
        load_checkpoint(build_supernet(space), tmp_path / "bad.pth")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"width": [16] * 8}, "needs 9 width, 7 depth, 7 kernel_size, 7 expand_ratio entries"),
        ({"width": [16, 20, 24, 32, 64, 112, 192, 216, 1792]}, r"w\[1\]=20 not in \[16, 24\]"),
        ({"expand_ratio": [1, 3, 4, 4, 4, 6, 6]}, r"e\[1\]\[0\]=3 not in \[4, 5, 6\]"),
        ({"depth": [1, 3, 3, 3, 3, 3, 3]}, r"d\[6\]=3 not in \[1, 2\]"),
    ],
)
def test_bad_config_names_the_gene(space, change, message):
    with pytest.raises(FamcError, match=message):
        space.from_attentivenas(PUBLISHED["a0"][0] | change)


def test_kernels_and_expands_are_chosen_per_stage(space):
    arch = space.smallest().to_dict()
    arch["ks"][1] = [3, 5, 3]
    with pytest.raises(FamcError, match="stage 1 mixes kernels"):
        space.arch_from_dict(arch)
    with pytest.raises(FamcError, match="reads attentivenas configurations"):
        space.from_ofa({"ks": [3] * 20, "e": [4] * 20, "d": [2] * 5}, resolution=224)


@pytest.mark.skipif(not os.environ.get("FAMC_ATTENTIVENAS_REPO"),
                    reason="set FAMC_ATTENTIVENAS_REPO to a facebookresearch/AttentiveNAS checkout")  # fmt: skip
@torch.no_grad()
def test_logits_match_the_reference(space, tmp_path):
    """famc's extracted sub-networks against the reference's ``get_active_subnet()``."""
    import yaml

    sys.path.insert(0, os.environ["FAMC_ATTENTIVENAS_REPO"])
    from models.attentive_nas_dynamic_model import AttentiveNasDynamicModel
    from utils.config import AttrDict

    root = Path(os.environ["FAMC_ATTENTIVENAS_REPO"])
    cfg = AttrDict(yaml.safe_load((root / "configs/train_attentive_nas_models.yml").read_text()))
    torch.manual_seed(0)
    ref = AttentiveNasDynamicModel(cfg.supernet_config, n_classes=1000, bn_param=(0.1, 1e-5))
    g = torch.Generator().manual_seed(1)
    for m in ref.modules():
        if isinstance(m, nn.BatchNorm2d) and m.affine:
            m.weight.copy_(0.5 + torch.rand(m.weight.shape, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}},
               tmp_path / "ref.pth")  # fmt: skip
    net = build_supernet(space)
    load_checkpoint(net, tmp_path / "ref.pth")
    random.seed(5)
    for config in [ref.sample_min_subnet(), ref.sample_max_subnet(), ref.sample_active_subnet()]:
        ref.set_active_subnet(**config)
        sub = ref.get_active_subnet(preserve_weight=True).eval()
        x = torch.randn(2, 3, config["resolution"], config["resolution"], generator=g)
        ours = net.extract(space.from_attentivenas(config))(x)
        assert (ours - sub(x)).abs().max().item() <= 1e-5, config
