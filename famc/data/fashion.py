"""Fashion-MNIST from its four IDX files, found locally or downloaded once into a cache.

Search order (first directory holding all four files wins):

1. ``$FAMC_DATA_DIR`` if set, and then only it (a user who names a copy must get that copy or an
   error, never another copy found elsewhere);
2. ``/usr/share/datasets/fashion-mnist/`` (Debian package ``dataset-fashion-mnist``);
3. the download cache ``$FAMC_CACHE_DIR/fashion-mnist`` (default ``~/.cache/famc/fashion-mnist``);
4. otherwise download from the canonical URL into that cache. Each file goes to a temp file in the
   cache directory, is checked (gzip + IDX magic + payload size) and only then renamed into place,
   so an interrupted download never leaves a file that later looks valid.

Files may be gzipped (``*.gz``, detected by content) or already decompressed. Decoding is plain
numpy on the decompressed bytes (~0.5 s for the full set), so no decoded-array cache is kept.
"""

from __future__ import annotations

import contextlib
import gzip
import http.client
import os
import tempfile
import urllib.request
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from famc.data.splits import ImageSet
from famc.errors import FamcError

__all__ = [
    "FASHION_CLASSES",
    "FASHION_FILES",
    "FASHION_MNIST_URL",
    "SYSTEM_DIR",
    "cache_dir",
    "download_fashion_mnist",
    "find_fashion_mnist",
    "load_fashion_mnist",
    "read_idx",
]

FASHION_CLASSES: tuple[str, ...] = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

#: Canonical file names, in (train images, train labels, test images, test labels) order.
FASHION_FILES: tuple[str, ...] = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Module-level so tests (and mirrors) can point elsewhere; every lookup reads it at call time.
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
DOWNLOAD_TIMEOUT_S = 60.0

_IDX_MAGIC_IMAGES = 2051  # 0x00000803: unsigned bytes, 3 dims
_IDX_MAGIC_LABELS = 2049  # 0x00000801: unsigned bytes, 1 dim
_GZIP_MAGIC = b"\x1f\x8b"


def cache_dir() -> Path:
    """Where downloads go: ``$FAMC_CACHE_DIR/fashion-mnist`` or ``~/.cache/famc/fashion-mnist``."""
    root = os.environ.get("FAMC_CACHE_DIR")
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "famc"
    return base / "fashion-mnist"


def _resolve(directory: Path, name: str) -> Path | None:
    """The file for ``name`` in ``directory``: ``name`` itself or its decompressed twin."""
    for candidate in (directory / name, directory / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def _missing_reason(directory: Path) -> str | None:
    """``None`` if ``directory`` holds all four files, else a short reason for the error message."""
    if not directory.is_dir():
        return "no such directory"
    missing = [n for n in FASHION_FILES if _resolve(directory, n) is None]
    return f"missing {', '.join(missing)}" if missing else None


def _candidates() -> list[tuple[str, Path]]:
    return [("system", SYSTEM_DIR), ("cache", cache_dir())]


def find_fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> Path:
    """The directory holding the four files, downloading into the cache if nowhere has them.

    An explicit ``root`` (or ``$FAMC_DATA_DIR``) is used alone: asking for a directory and silently
    reading another would hide mistakes. Otherwise the module-level search order applies.
    """
    env = os.environ.get("FAMC_DATA_DIR")
    if root is None and env:
        root = env
    if root is not None:
        directory = Path(root).expanduser()
        reason = _missing_reason(directory)
        if reason is not None:
            raise FamcError(
                f"Fashion-MNIST root {directory}: {reason}; put the four IDX files "
                f"({', '.join(FASHION_FILES)}) there or pass root=None to search the defaults"
            )
        return directory

    looked: list[str] = []
    for label, directory in _candidates():
        reason = _missing_reason(directory)
        if reason is None:
            return directory
        looked.append(f"{directory} [{label}: {reason}]")

    target = cache_dir()
    if download:
        try:
            download_fashion_mnist(target)
            return target
        except (OSError, ValueError, http.client.HTTPException, FamcError) as exc:
            detail = " ".join(str(exc).split()) or type(exc).__name__
            attempt = f"download from {FASHION_MNIST_URL} into {target} failed ({detail})"
    else:
        attempt = "download disabled"
    raise FamcError(
        f"Fashion-MNIST not found: looked in {'; '.join(looked)}; {attempt}. Fix: "
        f"`apt-get install dataset-fashion-mnist`, or set FAMC_DATA_DIR to a directory holding "
        f"{', '.join(FASHION_FILES)}"
    )


def _open_url(url: str, timeout: float) -> BinaryIO:
    """Open ``url`` for reading; a seam so tests can replace the network."""
    return urllib.request.urlopen(url, timeout=timeout)


def download_fashion_mnist(target: str | os.PathLike[str]) -> Path:
    """Download any of the four files missing from ``target``; each lands atomically, checked."""
    directory = Path(target)
    directory.mkdir(parents=True, exist_ok=True)
    for name in FASHION_FILES:
        if _resolve(directory, name) is not None:
            continue
        final = directory / name
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".part", dir=directory)
        tmp = Path(tmp_name)
        try:
            with (
                os.fdopen(fd, "wb") as out,
                _open_url(FASHION_MNIST_URL + name, DOWNLOAD_TIMEOUT_S) as src,
            ):
                while chunk := src.read(1 << 20):
                    out.write(chunk)
            _validate_download(tmp, name)
            os.replace(tmp, final)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
    return directory


def _validate_download(path: Path, name: str) -> None:
    """Reject error pages and truncated transfers before they get a real file name."""
    if path.stat().st_size == 0:
        raise FamcError(f"downloaded {name} is empty")
    if not path.read_bytes()[:2] == _GZIP_MAGIC:
        raise FamcError(f"downloaded {name} is not gzip data (got an error page?)")
    arr = read_idx(path, display_name=name)
    expected_ndim = 3 if "images" in name else 1
    if arr.ndim != expected_ndim:
        raise FamcError(f"downloaded {name} has {arr.ndim} dims, expected {expected_ndim}")


def read_idx(path: str | os.PathLike[str], *, display_name: str | None = None) -> np.ndarray:
    """Parse an unsigned-byte IDX file (gzipped or not) into a writable numpy array.

    Validates the magic (two zero bytes, type 0x08, 1-4 dims) and that the payload length equals
    the product of the header dims, so truncated or foreign files fail loudly with their name.
    """
    p = Path(path)
    shown = display_name or str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise FamcError(f"cannot read IDX file {shown}: {exc.strerror or exc}") from exc
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise FamcError(
                f"corrupt IDX file {shown}: bad gzip data ({exc}); delete it and re-download or "
                f"reinstall dataset-fashion-mnist"
            ) from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or not 1 <= raw[3] <= 4:
        raise FamcError(
            f"corrupt IDX file {shown}: bad magic {raw[:4].hex() or '(empty)'} (expected "
            f"000008 + 1-4 dims); replace it with the original file"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise FamcError(f"corrupt IDX file {shown}: header truncated; replace it")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(dims, dtype=np.int64))
    if len(raw) - header != expected:
        raise FamcError(
            f"corrupt IDX file {shown}: header dims {dims} need {expected} bytes of data, "
            f"found {len(raw) - header}; replace it with the original file"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def _magic(arr: np.ndarray) -> int:
    return _IDX_MAGIC_IMAGES if arr.ndim == 3 else _IDX_MAGIC_LABELS if arr.ndim == 1 else -1


def _load_pair(directory: Path, images_name: str, labels_name: str) -> ImageSet:
    img_path = _resolve(directory, images_name)
    lbl_path = _resolve(directory, labels_name)
    assert img_path is not None and lbl_path is not None  # guaranteed by find_fashion_mnist
    images = read_idx(img_path)
    labels = read_idx(lbl_path)
    if _magic(images) != _IDX_MAGIC_IMAGES or images.shape[1] != images.shape[2]:
        raise FamcError(
            f"corrupt IDX file {img_path}: expected N×H×W square images, got shape "
            f"{images.shape}; replace it with the original file"
        )
    if _magic(labels) != _IDX_MAGIC_LABELS:
        raise FamcError(
            f"corrupt IDX file {lbl_path}: expected a 1-D label vector, got shape {labels.shape}; "
            f"replace it with the original file"
        )
    if images.shape[0] == 0:
        raise FamcError(f"IDX file {img_path} holds no images; replace it with the original file")
    if labels.shape[0] != images.shape[0]:
        raise FamcError(
            f"IDX files disagree: {img_path} has {images.shape[0]} images but {lbl_path} has "
            f"{labels.shape[0]} labels; replace them with a matching pair"
        )
    if labels.size and int(labels.max()) >= len(FASHION_CLASSES):
        raise FamcError(
            f"corrupt IDX file {lbl_path}: label {int(labels.max())} outside 0-"
            f"{len(FASHION_CLASSES) - 1}; replace it with the original file"
        )
    return ImageSet(
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(labels).to(torch.int64),
    )


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None, *, download: bool = True
) -> tuple[ImageSet, ImageSet, Path]:
    """Official (train, test) sets as uint8 N×1×28×28 / int64, plus the directory they came from."""
    directory = find_fashion_mnist(root, download=download)
    train = _load_pair(directory, FASHION_FILES[0], FASHION_FILES[1])
    test = _load_pair(directory, FASHION_FILES[2], FASHION_FILES[3])
    if train.images.shape[1:] != test.images.shape[1:]:
        raise FamcError(
            f"Fashion-MNIST in {directory}: train images are {tuple(train.images.shape[2:])} but "
            f"test images are {tuple(test.images.shape[2:])}; replace the files with the originals"
        )
    return train, test, directory
