"""Streamed image folders (famc.data.stream): ImageNet layout, subsets by file list, OFA's crop,
bounded memory, and the same correctness vectors as the preloaded reader."""

from __future__ import annotations

import os
import random
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from famc.data import DataConfig, DataSplits, StreamConfig, load_dataset
from famc.data.folder import read_image
from famc.data.stream import PREFETCH
from famc.errors import FamcError
from famc.evaluate.engine import Evaluator
from famc.space import get_space
from famc.supernet import build_supernet, load_checkpoint

ROOT = Path(__file__).resolve().parents[1]
SUPERNET = ROOT / "examples" / "fashion" / "supernet" / "supernet.safetensors"
TRAIN, VAL, CLASSES = 270, 30, 10  # 3,000 images


@pytest.fixture(scope="module")
def imagenet_like(tmp_path_factory) -> Path:
    """``train/<class>/`` and ``val/<class>/`` of grayscale images of varied, non-square sizes: a
    bright bar whose row depends on the class, on noise."""
    root = tmp_path_factory.mktemp("imagenet_like")
    rng = np.random.default_rng(0)
    for split, n in (("train", TRAIN), ("val", VAL)):
        for c in range(CLASSES):
            d = root / split / f"n{c:08d}"
            d.mkdir(parents=True)
            for i in range(n):
                h, w = (int(v) for v in rng.integers(28, 44, 2))
                img = rng.integers(0, 60, (h, w), dtype=np.uint8)
                row = 3 + c * (h - 8) // CLASSES
                img[row : row + 3, 2:-2] = 230
                Image.fromarray(img, mode="L").save(d / f"{split}_{i:04d}.png")
    return root


def _load(root: Path, seed: int = 0, **stream) -> DataSplits:
    config = (
        None if stream.get("off") else StreamConfig(**{"mean": (0.2,), "std": (0.3,), **stream})
    )
    return load_dataset("folder", root, image_size=28, channels=1, search_size=500,
                        calib_size=200, seed=seed, stream=config)  # fmt: skip


def test_subsets_are_seeded_file_lists_in_the_fingerprint(imagenet_like: Path) -> None:
    a, b, c = _load(imagenet_like), _load(imagenet_like), _load(imagenet_like, seed=1)
    assert (len(a.train), len(a.search), len(a.calib), len(a.test)) == (2200, 500, 200, 300)
    assert a.classes == tuple(f"n{c:08d}" for c in range(CLASSES))
    for split in ("train", "search", "calib", "test"):
        assert np.array_equal(getattr(a, split).files, getattr(b, split).files)
    assert a.fingerprint() == b.fingerprint()
    assert not np.array_equal(a.search.files, c.search.files)
    assert a.fingerprint() != c.fingerprint()
    assert all(f.startswith(b"val/") for f in a.test.files)
    train = set(a.train.files.tolist())
    assert not train & set(a.search.files.tolist()) and set(a.calib.files.tolist()) <= train
    # decoding processes, crop and batch size are not part of what the data is
    assert _load(imagenet_like, workers=0).fingerprint() == a.fingerprint()
    assert _load(imagenet_like, crop_ratio=None).fingerprint() != a.fingerprint()


def test_a_file_replaced_in_place_changes_the_fingerprint(imagenet_like: Path,
                                                          tmp_path: Path) -> None:  # fmt: skip
    """Same paths, other pixels: a cached evaluation must not be reused. A copy of the folder
    elsewhere (another node's disk, other mtimes) is the same data."""
    copy = tmp_path / "copy"
    shutil.copytree(imagenet_like, copy)
    before = _load(copy).fingerprint()
    assert before == _load(imagenet_like).fingerprint()
    victim = copy / os.fsdecode(_load(copy).search.files[0])
    Image.fromarray(np.zeros((40, 40), np.uint8), mode="L").save(victim)
    assert _load(copy).fingerprint() != before


def test_streamed_vectors_equal_the_preloaded_ones(imagenet_like: Path) -> None:
    """A stream decoding what the preloaded reader decodes (whole image resized, no crop) gives
    the same correctness vectors, with and without a race's slices."""
    pre = _load(imagenet_like, off=True)
    streamed = _load(imagenet_like, workers=2, crop_ratio=None, mean=pre.mean, std=pre.std)
    assert np.array_equal(streamed.search.labels, pre.search.labels)
    space = get_space("fashion-mbv3")
    net = build_supernet(space)
    load_checkpoint(net, SUPERNET)
    rng = random.Random(0)
    archs = [space.smallest(), space.sample(rng)]
    evs = [Evaluator(net.eval(), d.calib, d.mean, d.std, batch_size=100) for d in (pre, streamed)]
    for arch in archs:
        want = evs[0].correct(arch, pre.search)
        assert torch.equal(evs[1].correct(arch, streamed.search), want)
        head = evs[1].logits(evs[1].model(arch), streamed.search, arch.resolution, 200, 400)
        assert torch.equal(head.argmax(1) == streamed.search.labels[200:400], want[200:400])
    assert 0.0 < float(want.float().mean()) < 1.0  # a real vector, not all right or all wrong


def test_ofa_crop_at_each_resolution(imagenet_like: Path) -> None:
    """With a crop ratio, batches are decoded at the asked resolution: shorter side resized to
    ceil(r / 0.875), centre crop r²; family.json records the ratio."""
    d = _load(imagenet_like, workers=2)
    assert d.crop_ratio == 0.875
    for r in (20, 28, 32):
        x, y = next(d.test.batches(7, resolution=r))
        assert x.shape == (7, 1, r, r) and x.dtype == torch.uint8
        first = Path(d.test.root) / d.test.files[0].decode()
        assert torch.equal(x[0, 0], torch.from_numpy(read_image(first, 1, r, 0.875)[..., 0].copy()))
    with Image.open(first) as im:
        w, h = im.size
    whole = read_image(first, 1, 28)  # without a crop the bar spans the image's width
    assert whole.shape == (28, 28, 1) and (w, h) != (28, 28)


def _peak_bytes(passes) -> int:
    """Peak of numpy's allocations (the decoded pixels; torch's are not traced) over ``passes``."""
    tracemalloc.start()
    try:
        for images in passes:
            assert sum(x.shape[0] for x in images) > 0
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_stays_bounded_over_two_passes(imagenet_like: Path) -> None:
    """Two full passes over 2,200 images through the evaluator's streamed inputs hold a few batches
    at a time, as one pass over 600 does: memory does not grow with the set and nothing is cached
    across passes."""
    d = _load(imagenet_like, workers=2)
    batch, r = 100, 64
    batch_bytes = batch * r * r
    ev = Evaluator(build_supernet(get_space("fashion-mbv3")).eval(), d.calib, d.mean, d.std,
                   batch_size=batch)  # fmt: skip
    small = _peak_bytes([ev.inputs(d.train.subset(range(600)), r)])
    peak = _peak_bytes([ev.inputs(d.train, r), ev.inputs(d.train, r)])
    # in flight: PREFETCH + 1 batches, each as the pickled reply and its array, and one assembled
    bound = (2 * (PREFETCH + 1) + 2) * batch_bytes + 256 * 1024
    assert peak < bound < len(d.train) * r * r / 2, (peak, bound)
    assert peak < 1.5 * small, (peak, small)
    assert not ev._prepared  # streamed inputs are never cached


def test_stream_config_errors(imagenet_like: Path) -> None:
    with pytest.raises(ValidationError, match="stream.mean and stream.std need 1 values"):
        DataConfig(name="folder", root=str(imagenet_like), channels=1, stream=StreamConfig())
    with pytest.raises(FamcError, match="fashion-mnist is preloaded"):
        DataConfig(name="fashion-mnist", channels=3, stream=StreamConfig()).load()
    bad = imagenet_like / "train" / "n00000000" / "train_0000.png"
    saved = bad.read_bytes()
    try:
        bad.write_bytes(b"not a png")
        d = _load(imagenet_like, workers=2)
        with pytest.raises(FamcError, match="cannot read image .*train_0000.png"):
            list(d.train.batches(64))
    finally:
        bad.write_bytes(saved)
