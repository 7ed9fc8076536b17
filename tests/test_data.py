"""famc.data: Fashion-MNIST discovery/download/parsing, folder reader, splits, to_input."""

from __future__ import annotations

import gzip
import io
import os
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pytest
import torch
from PIL import Image

import famc.data.fashion as fashion
from famc.data import (
    DATASETS,
    FASHION_CLASSES,
    DataSplits,
    ImageSet,
    load_dataset,
    read_idx,
    to_input,
)
from famc.errors import FamcError

REAL_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = fashion.FASHION_FILES


# ---------------------------------------------------------------- helpers


def idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_fashion(directory: Path, n_train: int = 24, n_test: int = 12, seed: int = 0) -> Path:
    """Four tiny gzipped IDX files in the canonical layout (labels cycle through 0-9)."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = (
        rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        (np.arange(n_train) % 10).astype(np.uint8),
        rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        (np.arange(n_test) % 10).astype(np.uint8),
    )
    for name, arr in zip(FILES, arrays, strict=True):
        (directory / name).write_bytes(gzip.compress(idx_bytes(arr)))
    return directory


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No real data dirs, cache or network: every location points inside tmp_path."""
    monkeypatch.delenv("FAMC_DATA_DIR", raising=False)
    monkeypatch.setenv("FAMC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion, "SYSTEM_DIR", tmp_path / "no-system-dir")
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", (tmp_path / "no-mirror").as_uri() + "/")
    return tmp_path


def assert_valid_splits(s: DataSplits, n_pool: int) -> None:
    train, search, calib = (
        set(t.tolist()) for t in (s.train_indices, s.search_indices, s.calib_indices)
    )
    assert not train & search
    assert train | search == set(range(n_pool))
    assert calib <= train
    assert len(s.train) == len(train) and len(s.search) == len(search)
    assert len(s.calib) == len(calib)


# ---------------------------------------------------------------- real Fashion-MNIST

has_real = all((REAL_DIR / n).is_file() for n in FILES)


@pytest.fixture(scope="module")
def real() -> DataSplits:
    if not has_real:
        pytest.skip(f"{REAL_DIR} missing: apt-get install dataset-fashion-mnist")
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("FAMC_DATA_DIR", raising=False)
        mp.setattr(fashion, "FASHION_MNIST_URL", "file:///nonexistent-famc-mirror/")
        return load_dataset("fashion-mnist")


def test_real_fashion_shapes_counts_and_stats(real: DataSplits) -> None:
    assert real.name == "fashion-mnist" and real.origin == str(REAL_DIR)
    assert real.classes == FASHION_CLASSES and len(real.classes) == 10
    assert (real.channels, real.image_size) == (1, 28)
    assert (len(real.train), len(real.search), len(real.calib), len(real.test)) == (
        50000,
        10000,
        2000,
        10000,
    )
    for split in (real.train, real.search, real.calib, real.test):
        assert split.images.dtype == torch.uint8 and split.labels.dtype == torch.int64
        assert split.images.shape[1:] == (1, 28, 28)
        assert int(split.labels.min()) == 0 and int(split.labels.max()) == 9
    official = torch.cat([real.train.labels, real.search.labels])
    assert torch.bincount(official, minlength=10).tolist() == [6000] * 10
    assert torch.bincount(real.test.labels, minlength=10).tolist() == [1000] * 10
    assert abs(real.mean[0] - 0.286) < 0.002 and abs(real.std[0] - 0.353) < 0.002
    assert_valid_splits(real, 60000)
    # calib images really are the train images at those indices
    pos = torch.searchsorted(real.train_indices, real.calib_indices)
    assert torch.equal(real.train.images[pos], real.calib.images)
    fp = real.fingerprint()
    assert len(fp) == 64 and int(fp, 16) >= 0 and real.fingerprint() == fp


# ---------------------------------------------------------------- discovery and splits


def test_data_dir_takes_priority(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = write_fashion(isolated / "system", n_train=30)
    monkeypatch.setattr(fashion, "SYSTEM_DIR", system)
    assert load_dataset("fashion-mnist").origin == str(system)  # fallback works...
    mine = write_fashion(isolated / "mine", n_train=18)
    monkeypatch.setenv("FAMC_DATA_DIR", str(mine))
    s = load_dataset("fashion-mnist")  # ...but $FAMC_DATA_DIR wins
    assert s.origin == str(mine)
    assert len(s.train) + len(s.search) == 18 and len(s.test) == 12
    assert len(s.search) == 3  # default search_size = min(10000, 18 // 6)
    expected = read_idx(mine / FILES[0])[s.train_indices.numpy()]
    assert np.array_equal(s.train.images[:, 0].numpy(), expected)


def test_splits_deterministic_disjoint_and_seeded(isolated: Path, monkeypatch) -> None:
    monkeypatch.setenv("FAMC_DATA_DIR", str(write_fashion(isolated / "d", n_train=60)))
    a = load_dataset("fashion-mnist", search_size=10, calib_size=7, seed=0)
    b = load_dataset("fashion-mnist", search_size=10, calib_size=7, seed=0)
    c = load_dataset("fashion-mnist", search_size=10, calib_size=7, seed=1)
    for s in (a, c):
        assert_valid_splits(s, 60)
        assert (len(s.train), len(s.search), len(s.calib)) == (50, 10, 7)
    for field in ("train_indices", "search_indices", "calib_indices"):
        assert torch.equal(getattr(a, field), getattr(b, field))
    assert torch.equal(a.train.images, b.train.images)
    assert a.fingerprint() == b.fingerprint()
    assert not torch.equal(a.search_indices, c.search_indices)
    assert a.fingerprint() != c.fingerprint()
    assert torch.equal(a.test.images, c.test.images)  # the test set ignores the seed


def test_fingerprint_tracks_content(isolated: Path, monkeypatch) -> None:
    d = write_fashion(isolated / "d")
    monkeypatch.setenv("FAMC_DATA_DIR", str(d))
    before = load_dataset("fashion-mnist").fingerprint()
    arr = read_idx(d / FILES[2])
    arr[3, 5, 5] ^= 1  # one test pixel
    (d / FILES[2]).write_bytes(gzip.compress(idx_bytes(arr)))
    assert load_dataset("fashion-mnist").fingerprint() != before


def test_uncompressed_idx_and_explicit_root(tmp_path: Path) -> None:
    d = write_fashion(tmp_path / "d")
    for name in FILES:  # decompressed twins are accepted too
        (d / name.removesuffix(".gz")).write_bytes(gzip.decompress((d / name).read_bytes()))
        (d / name).unlink()
    s = load_dataset("fashion-mnist", root=d)
    assert len(s.train) + len(s.search) == 24 and s.origin == str(d)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FamcError, match=r"root .*empty: missing train-images"):
        load_dataset("fashion-mnist", root=tmp_path / "empty")


# ---------------------------------------------------------------- download


def test_download_from_file_url_is_atomic(isolated: Path, monkeypatch) -> None:
    mirror = write_fashion(isolated / "mirror")
    monkeypatch.setattr(fashion, "FASHION_MNIST_URL", mirror.as_uri() + "/")
    renames: list[tuple[str, str]] = []
    real_replace = os.replace

    def spy_replace(src: str | Path, dst: str | Path) -> None:
        assert Path(src).name.endswith(".part") and Path(src).parent == Path(dst).parent
        assert Path(src).stat().st_size > 0 and not Path(dst).exists()
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(fashion.os, "replace", spy_replace)
    s = load_dataset("fashion-mnist")
    cache = isolated / "cache" / "fashion-mnist"
    assert s.origin == str(cache)
    assert sorted(dst for _, dst in renames) == sorted(FILES)
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES)  # no temp files left
    for name in FILES:
        assert (cache / name).read_bytes() == (mirror / name).read_bytes()

    def no_network(url: str, timeout: float) -> BinaryIO:
        raise AssertionError(f"unexpected download of {url}")

    monkeypatch.setattr(fashion, "_open_url", no_network)
    assert load_dataset("fashion-mnist").fingerprint() == s.fingerprint()  # served from cache


def test_truncated_download_never_lands(isolated: Path, monkeypatch) -> None:
    mirror = write_fashion(isolated / "mirror")
    calls: list[str] = []

    def opener(truncate: str | None):
        def _open(url: str, timeout: float) -> BinaryIO:
            name = url.rsplit("/", 1)[1]
            calls.append(name)
            data = (mirror / name).read_bytes()
            if name == truncate:
                data = gzip.compress(gzip.decompress(data)[:-5])  # valid gzip, short payload
            return io.BytesIO(data)

        return _open

    monkeypatch.setattr(fashion, "_open_url", opener(truncate=FILES[2]))
    with pytest.raises(FamcError, match=r"download from .* failed .*t10k-images.*need"):
        load_dataset("fashion-mnist")
    cache = isolated / "cache" / "fashion-mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(FILES[:2])  # no partial/temp files
    calls.clear()
    monkeypatch.setattr(fashion, "_open_url", opener(truncate=None))
    assert len(load_dataset("fashion-mnist").test) == 12
    assert calls == list(FILES[2:])  # only the missing files are fetched again


def test_named_data_dir_is_used_alone(isolated: Path, monkeypatch) -> None:
    monkeypatch.setattr(fashion, "SYSTEM_DIR", write_fashion(isolated / "system", n_train=30))
    mine = write_fashion(isolated / "mine", n_train=18)
    (mine / FILES[0]).write_bytes(b"broken")  # a damaged copy must not fall back to another one
    monkeypatch.setenv("FAMC_DATA_DIR", str(mine))
    with pytest.raises(FamcError, match=f"{mine / FILES[0]}"):
        load_dataset("fashion-mnist")
    empty = isolated / "empty"
    empty.mkdir()
    monkeypatch.setenv("FAMC_DATA_DIR", str(empty))
    with pytest.raises(FamcError, match=f"root {empty}: missing"):
        load_dataset("fashion-mnist")


def test_missing_everywhere_lists_places(isolated: Path, monkeypatch) -> None:
    with pytest.raises(FamcError) as info:
        load_dataset("fashion-mnist")
    msg = str(info.value)
    assert "\n" not in msg
    for place in (isolated / "no-system-dir", isolated / "cache" / "fashion-mnist"):
        assert str(place) in msg
    assert "no-mirror" in msg and "failed" in msg
    assert "apt-get install dataset-fashion-mnist" in msg and "FAMC_DATA_DIR" in msg
    with pytest.raises(FamcError, match="download disabled"):
        load_dataset("fashion-mnist", download=False)


# ---------------------------------------------------------------- corrupt IDX


@pytest.mark.parametrize(
    ("which", "payload", "pattern"),
    [
        (1, b"\x00\x00\x0d\x01" + struct.pack(">I", 24) + bytes(24), "bad magic"),
        (0, idx_bytes(np.zeros((24, 28, 28), np.uint8))[:-100], "need 18816 bytes"),
        (3, idx_bytes(np.full(12, 10, np.uint8)), "label 10 outside"),
        (2, idx_bytes(np.zeros((12, 28), np.uint8)), "expected N×H×W"),
        (1, b"\x1f\x8b garbage", "bad gzip"),
    ],
)
def test_corrupt_idx_names_file(
    isolated: Path, monkeypatch, which: int, payload: bytes, pattern: str
) -> None:
    d = write_fashion(isolated / "d")
    bad = d / FILES[which]
    bad.write_bytes(payload if payload[:2] == b"\x1f\x8b" else gzip.compress(payload))
    monkeypatch.setenv("FAMC_DATA_DIR", str(d))
    with pytest.raises(FamcError, match=pattern) as info:
        load_dataset("fashion-mnist")
    assert str(bad) in str(info.value)


# ---------------------------------------------------------------- image folders

COLORS = {"cat": (200, 30, 10), "dog": (10, 220, 40), "bird": (20, 40, 250)}


def make_class_tree(root: Path, per_class: int, start: int = 0) -> None:
    """Constant-colour images; the blue channel encodes the file index so order is checkable."""
    for cls, (r, g, _) in COLORS.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(start, start + per_class):
            ext = ".BMP" if i == 0 else ".png"
            Image.new("RGB", (12, 10), (r, g, i)).save(root / cls / f"img{i:02d}{ext}")
        (root / cls / "notes.txt").write_text("ignored")


def test_folder_flat_layout_carves_stratified_test(tmp_path: Path) -> None:
    make_class_tree(tmp_path, per_class=7)
    s = load_dataset("folder", root=tmp_path, image_size=8, channels=3, seed=0)
    assert s.classes == ("bird", "cat", "dog") and s.name == "folder"
    assert (s.channels, s.image_size) == (3, 8)
    assert s.train.images.shape[1:] == (3, 8, 8) and s.train.images.dtype == torch.uint8
    # 7 per class -> round(7/6) = 1 test image per class; 18 in the pool; search = 18 // 6
    assert torch.bincount(s.test.labels, minlength=3).tolist() == [1, 1, 1]
    assert (len(s.train), len(s.search), len(s.calib)) == (15, 3, 15)
    for split in (s.train, s.search, s.test):
        for img, y in zip(split.images, split.labels, strict=True):
            r, g, _ = COLORS[s.classes[int(y)]]
            assert (img[0] == r).all() and (img[1] == g).all()  # constant colour survives resize
    seen = sorted(
        (int(y), int(img[2, 0, 0]))
        for split in (s.train, s.search, s.test)
        for img, y in zip(split.images, split.labels, strict=True)
    )
    assert seen == [(c, i) for c in range(3) for i in range(7)]  # every file exactly once
    other = load_dataset("folder", root=tmp_path, image_size=8, channels=3, seed=1)
    assert torch.equal(other.test.images, s.test.images)  # test carve ignores seed
    assert not torch.equal(other.search_indices, s.search_indices)
    again = load_dataset("folder", root=tmp_path, image_size=8, channels=3, seed=0)
    assert again.fingerprint() == s.fingerprint()


def test_folder_train_test_layout_grayscale(tmp_path: Path) -> None:
    make_class_tree(tmp_path / "train", per_class=6)
    make_class_tree(tmp_path / "test", per_class=2, start=6)
    s = load_dataset("folder", root=tmp_path, image_size=5, channels=1, search_size=2)
    assert len(s.train) + len(s.search) == 18 and len(s.test) == 6
    assert s.test.images.shape == (6, 1, 5, 5)
    assert s.test.labels.tolist() == [0, 0, 1, 1, 2, 2]
    r, g, b = (200, 30, 6)  # first cat test image; PIL's ITU-R 601-2 luma transform
    luma = (r * 299 + g * 587 + b * 114) // 1000
    assert abs(int(s.test.images[2, 0, 0, 0]) - luma) <= 1


@pytest.mark.parametrize("case", ["missing", "no_classes", "empty_class", "corrupt", "extra_test"])
def test_folder_errors_name_the_path(tmp_path: Path, case: str) -> None:
    root = tmp_path / "imgs"
    if case == "missing":
        culprit = root
    elif case == "no_classes":
        root.mkdir()
        culprit = root
    elif case == "empty_class":
        make_class_tree(root, per_class=3)
        culprit = root / "empty"
        culprit.mkdir()
    elif case == "corrupt":
        make_class_tree(root, per_class=3)
        culprit = root / "cat" / "img99.png"
        culprit.write_bytes(b"not a png")
    else:
        make_class_tree(root / "train", per_class=3)
        make_class_tree(root / "test", per_class=1)
        culprit = root / "test" / "zebra"
        culprit.mkdir()
        Image.new("RGB", (4, 4)).save(culprit / "z.png")
    with pytest.raises(FamcError) as info:
        load_dataset("folder", root=root, image_size=8)
    assert str(culprit) in str(info.value) and "\n" not in str(info.value)


# ---------------------------------------------------------------- to_input and ImageSet


def test_to_input_normalises_without_resize() -> None:
    imgs = torch.tensor([[[[0, 255], [51, 102]]] * 3], dtype=torch.uint8)  # 1×3×2×2
    mean, std = (0.0, 0.5, 0.2), (1.0, 0.25, 0.4)
    out = to_input(imgs, 2, mean, std)
    assert out.dtype == torch.float32 and out.shape == (1, 3, 2, 2)
    assert out.is_contiguous(memory_format=torch.channels_last)
    base = torch.tensor([[0.0, 1.0], [0.2, 0.4]])
    for c in range(3):
        assert torch.allclose(out[0, c], (base - mean[c]) / std[c], atol=1e-6)
    assert to_input(imgs, 2, mean, std, channels_last=False).is_contiguous()


def test_to_input_bilinear_resize_values() -> None:
    imgs = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)
    up = to_input(imgs, 4, (0.5,), (0.5,))[0, 0] * 0.5 + 0.5  # undo normalisation
    # half-pixel centres: out(0,0) = in(0,0); out(0,1) samples x=0.25; out(1,1) samples (0.25,0.25)
    assert up[0, 0].item() == pytest.approx(0.0, abs=1e-6)
    assert up[0, 1].item() == pytest.approx(0.25, abs=1e-6)
    assert up[1, 1].item() == pytest.approx(0.375, abs=1e-6)
    assert up[0, 3].item() == pytest.approx(1.0, abs=1e-6)
    big = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4) * 10
    down = to_input(big, 2, (0.0,), (1.0,))[0, 0] * 255  # no antialias: mean of 2×2 blocks
    assert torch.allclose(down, torch.tensor([[25.0, 45.0], [105.0, 125.0]]), atol=1e-4)


def test_imageset_subset_and_batches() -> None:
    s = ImageSet(torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1), torch.arange(10))
    assert len(s) == 10 and s.subset([3, 1]).labels.tolist() == [3, 1]
    plain = list(s.batches(4))
    assert [len(y) for _, y in plain] == [4, 4, 2]
    assert torch.cat([y for _, y in plain]).tolist() == list(range(10))
    assert [len(y) for _, y in s.batches(4, drop_last=True)] == [4, 4]

    def order(seed: int) -> list[int]:
        g = torch.Generator().manual_seed(seed)
        return torch.cat([y for _, y in s.batches(3, shuffle=True, generator=g)]).tolist()

    assert order(0) == order(0) != list(range(10))
    assert sorted(order(0)) == list(range(10)) and order(0) != order(1)
    for x, y in s.batches(3, shuffle=True, generator=torch.Generator().manual_seed(2)):
        assert torch.equal(x.view(-1).long(), y)  # images stay paired with labels


# ---------------------------------------------------------------- argument validation


def test_argument_errors(isolated: Path, monkeypatch) -> None:
    with pytest.raises(FamcError, match="unknown dataset 'cifar'.*fashion-mnist, folder"):
        load_dataset("cifar")
    assert tuple(DATASETS) == ("fashion-mnist", "folder")
    monkeypatch.setenv("FAMC_DATA_DIR", str(write_fashion(isolated / "d")))
    with pytest.raises(FamcError, match="search_size=24 must be smaller than the 24"):
        load_dataset("fashion-mnist", search_size=24)
    with pytest.raises(FamcError, match="calib_size=21 exceeds the 20"):
        load_dataset("fashion-mnist", search_size=4, calib_size=21)
    with pytest.raises(FamcError, match="search_size must be an integer"):
        load_dataset("fashion-mnist", search_size=2.5)  # type: ignore[arg-type]
    with pytest.raises(FamcError, match="fashion-mnist is 28x28 grayscale"):
        load_dataset("fashion-mnist", channels=3)
    with pytest.raises(FamcError, match="needs root"):
        load_dataset("folder")
