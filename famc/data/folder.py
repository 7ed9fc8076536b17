"""Users' own images from a class-per-folder tree, preloaded as uint8 tensors.

Layouts (checked in this order):

* ``root/train/<class>/*`` and ``root/test/<class>/*`` (or ``root/val/<class>/*``, ImageNet's
  layout): used as the official train/test sets; the classes are the folders under ``train/`` and
  the test folder may hold only those.
* ``root/<class>/*``: a test set is carved per class (stratified) with a permutation seeded by the
  fixed ``TEST_SPLIT_SEED``, independent of the search/calib ``seed`` so the held-out set is a
  property of the folder. Each class with ``n`` images gives ``min(n - 1, max(1, round(n / 6)))``
  to test (a single-image class stays in train); the rest, in file order, is the train pool.

Classes are folder names sorted by name (label = position). Images are ``*.png|jpg|jpeg|bmp``
(case-insensitive, sorted by file name, hidden files ignored), converted to ``L`` (1 channel) or
``RGB`` (3 channels) and resized to ``image_size``² with PIL bilinear when not already that size.
:mod:`famc.data.stream` reads the same layouts without preloading (ImageNet-sized folders).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from famc.data.splits import ImageSet
from famc.errors import FamcError

__all__ = [
    "IMAGE_EXTENSIONS",
    "TEST_SPLIT_SEED",
    "FolderFiles",
    "load_image_folder",
    "read_image",
    "scan_image_folder",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
TEST_SPLIT_SEED = 0
_MODES = {1: "L", 3: "RGB"}
_TEST_FOLDERS = ("test", "val")


def _class_dirs(root: Path) -> list[Path]:
    dirs = sorted(
        (p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )
    if not dirs:
        raise FamcError(
            f"no class folders in {root}: expected {root}/<class_name>/*.png|jpg|jpeg|bmp"
        )
    return dirs


def _image_files(class_dir: Path) -> list[Path]:
    files = sorted(
        (
            p
            for p in class_dir.iterdir()
            if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
        ),
        key=lambda p: p.name,
    )
    if not files:
        raise FamcError(
            f"class folder {class_dir} has no images: add *.png|jpg|jpeg|bmp files or remove it"
        )
    return files


def _scan(root: Path, classes: list[str] | None) -> tuple[list[str], list[Path], list[int]]:
    """Files and labels under ``root``; with ``classes`` given, folders must be among them."""
    dirs = _class_dirs(root)
    if classes is None:
        classes = [d.name for d in dirs]
    index = {name: i for i, name in enumerate(classes)}
    paths: list[Path] = []
    labels: list[int] = []
    for d in dirs:
        if d.name not in index:
            raise FamcError(
                f"class folder {d} has no counterpart in the train folder; add it there or "
                f"remove it (known classes: {', '.join(classes)})"
            )
        files = _image_files(d)
        paths.extend(files)
        labels.extend([index[d.name]] * len(files))
    return classes, paths, labels


def _center_crop(im: Image.Image, size: int, crop_ratio: float) -> Image.Image:
    """ImageNet evaluation's crop, as torchvision's ``Resize(ceil(size / crop_ratio))`` then
    ``CenterCrop(size)`` compute it (OFA evaluates at crop_ratio 0.875)."""
    short = math.ceil(size / crop_ratio)
    w, h = im.size
    ow, oh = (short, int(short * h / w)) if w <= h else (int(short * w / h), short)
    im = im.resize((ow, oh), Image.Resampling.BILINEAR)
    left, top = int(round((ow - size) / 2.0)), int(round((oh - size) / 2.0))
    return im.crop((left, top, left + size, top + size))


def read_image(path: Path | str, channels: int, size: int,
               crop_ratio: float | None = None) -> np.ndarray:  # fmt: skip
    """One image as uint8 H×W×C at ``size``²: the whole image resized (``crop_ratio`` None) or
    its shorter side resized to ``ceil(size / crop_ratio)`` and centre-cropped."""
    try:
        with Image.open(path) as src:
            im = src.convert(_MODES[channels])
        if crop_ratio is not None:
            im = _center_crop(im, size, crop_ratio)
        elif im.size != (size, size):
            im = im.resize((size, size), Image.Resampling.BILINEAR)
        arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise FamcError(f"cannot read image {path}: {exc}; fix or delete the file") from exc
    return arr.reshape(size, size, -1)


def _load(paths: list[Path], labels: list[int], channels: int, size: int) -> ImageSet:
    """Decode all files (threaded: PIL releases the GIL while decoding) into one uint8 tensor."""
    out = np.empty((len(paths), size, size, channels), dtype=np.uint8)

    def work(i: int) -> None:
        out[i] = read_image(paths[i], channels, size)

    workers = min(16, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(work, range(len(paths))):
            pass
    images = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64))


def _carve_test(labels: list[int], num_classes: int) -> tuple[list[int], list[int]]:
    """Stratified (pool, test) index lists; see the module docstring for the rule."""
    g = torch.Generator().manual_seed(TEST_SPLIT_SEED)
    by_class: list[list[int]] = [[] for _ in range(num_classes)]
    for i, y in enumerate(labels):
        by_class[y].append(i)
    test: list[int] = []
    for members in by_class:
        n = len(members)
        n_test = min(n - 1, max(1, round(n / 6)))
        perm = torch.randperm(n, generator=g)[:n_test].tolist()
        test.extend(members[j] for j in perm)
    test.sort()
    held = set(test)
    return [i for i in range(len(labels)) if i not in held], test


@dataclass(frozen=True)
class FolderFiles:
    """A folder tree's files and labels: the train pool and the test set (layouts above)."""

    classes: tuple[str, ...]
    pool: tuple[list[Path], list[int]]
    test: tuple[list[Path], list[int]]


def check_image_args(image_size: object, channels: object) -> None:
    if isinstance(channels, bool) or channels not in _MODES:
        raise FamcError(f"channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")
    if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1:
        raise FamcError(f"image_size must be a positive integer, got {image_size!r}")


def scan_image_folder(root: str | os.PathLike[str]) -> FolderFiles:
    """Every image file under ``root`` with its label, and the test split (layouts above)."""
    base = Path(root).expanduser()
    if not base.is_dir():
        raise FamcError(
            f"image folder {base} does not exist; pass root=<dir> holding <class_name>/ folders"
        )
    test_dir = next((base / t for t in _TEST_FOLDERS if (base / t).is_dir()), None)
    if (base / "train").is_dir() and test_dir is not None:
        classes, train_paths, train_labels = _scan(base / "train", None)
        _, test_paths, test_labels = _scan(test_dir, classes)
        return FolderFiles(tuple(classes), (train_paths, train_labels), (test_paths, test_labels))
    classes, paths, labels = _scan(base, None)
    pool_idx, test_idx = _carve_test(labels, len(classes))
    if not test_idx:
        raise FamcError(
            f"image folder {base} is too small to carve a test split (every class has one "
            f"image); add images or provide {base}/train and {base}/test"
        )

    def pick(idx: list[int]) -> tuple[list[Path], list[int]]:
        return [paths[i] for i in idx], [labels[i] for i in idx]

    return FolderFiles(tuple(classes), pick(pool_idx), pick(test_idx))


def load_image_folder(
    root: str | os.PathLike[str], *, image_size: int, channels: int
) -> tuple[tuple[str, ...], ImageSet, ImageSet]:
    """``(classes, train_pool, test)`` from a folder tree (layouts in the module docstring)."""
    check_image_args(image_size, channels)
    files = scan_image_folder(root)
    pool = _load(*files.pool, channels, image_size)
    return files.classes, pool, _load(*files.test, channels, image_size)
