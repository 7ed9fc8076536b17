"""In-memory image sets, the deterministic split rule, and the model-input transform.

Split rule (the same for every dataset, so a ``seed`` means the same thing everywhere):

1. ``g = torch.Generator().manual_seed(seed)``; ``perm = torch.randperm(n_train_pool, generator=g)``
   over the official training indices (the "train pool").
2. ``search`` = ``perm[:search_size]``, ``train`` = ``perm[search_size:]``; both are then sorted
   ascending so each split keeps the pool's original order (shuffling is the loader's job).
3. ``perm2 = torch.randperm(len(train), generator=g)`` (the same generator, continued);
   ``calib`` = ``train[sorted(perm2[:calib_size])]``, i.e. a seeded subset of ``train``.
4. ``test`` is the official held-out test set, untouched by ``seed``.

Defaults: ``search_size = min(10000, n_pool // 6)``, ``calib_size = min(2000, len(train))``.

``search`` is disjoint from ``train`` so the architecture search never ranks candidates on images
the supernet trained on (REG-NAS carves 20k ImageNet training images; we default to 10k). ``calib``
is drawn from ``train`` because BN re-calibration must see the training distribution, not the data
it is later evaluated on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from famc.errors import FamcError

DEFAULT_SEARCH_SIZE = 10_000
DEFAULT_CALIB_SIZE = 2_000

__all__ = [
    "DEFAULT_CALIB_SIZE",
    "DEFAULT_SEARCH_SIZE",
    "DataSplits",
    "ImageSet",
    "Images",
    "InputBatches",
    "channel_stats",
    "make_splits",
    "split_indices",
    "to_input",
]


class Images(Protocol):
    """A split as later stages read it: labels in RAM, pixels in uint8 batches. :class:`ImageSet`
    holds the pixels in RAM; :class:`famc.data.stream.FolderStream` decodes them from disk on each
    pass, so a folder larger than RAM can be searched."""

    #: True when the pixels are in RAM, so prepared inputs may be cached across candidates.
    preloaded: ClassVar[bool]

    @property
    def labels(self) -> Tensor: ...

    @property
    def channels(self) -> int: ...

    @property
    def image_size(self) -> int: ...

    def __len__(self) -> int: ...

    def subset(self, indices: Tensor | Sequence[int]) -> Images: ...

    def batches(self, batch_size: int, *, resolution: int | None = None, shuffle: bool = False,
                generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]: ...  # fmt: skip

    def digest(self, h: hashlib._Hash, label: str) -> None:
        """Feed what identifies this split's content into the data fingerprint ``h``."""


@dataclass(frozen=True, eq=False)
class ImageSet:
    """Preloaded images (uint8 N×C×H×W) and labels (int64 N); kept uint8 to save 4× memory."""

    images: Tensor
    labels: Tensor
    preloaded: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"ImageSet.images must be uint8 N×C×H×W, got {self.images.dtype} "
                f"{tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.dim() != 1:
            raise ValueError(
                f"ImageSet.labels must be int64 N, got {self.labels.dtype} "
                f"{tuple(self.labels.shape)}"
            )
        if self.images.shape[0] != self.labels.shape[0]:
            raise ValueError(
                f"ImageSet has {self.images.shape[0]} images but {self.labels.shape[0]} labels"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[2])

    def digest(self, h: hashlib._Hash, label: str) -> None:
        h.update(f"{label}:{tuple(self.images.shape)}".encode())
        h.update(_tensor_bytes(self.images))
        h.update(_tensor_bytes(self.labels))

    def subset(self, indices: Tensor | Sequence[int]) -> ImageSet:
        """A copy holding only ``indices`` (in that order)."""
        idx = torch.as_tensor(indices, dtype=torch.int64, device=self.labels.device)
        return ImageSet(self.images[idx], self.labels[idx])

    def batches(
        self,
        batch_size: int,
        *,
        resolution: int | None = None,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        drop_last: bool = False,
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """Yield ``(uint8 images, int64 labels)`` batches without a DataLoader (data is in RAM).

        Images keep their native size whatever ``resolution``: :func:`to_input` resizes them. With
        ``shuffle`` the order comes from ``generator`` (pass a seeded one for reproducible
        epochs; ``None`` uses torch's global RNG).
        """
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else None
        stop = n - n % batch_size if drop_last else n
        for start in range(0, stop, batch_size):
            if order is None:
                sl = slice(start, min(start + batch_size, n))
                yield self.images[sl], self.labels[sl]
            else:
                idx = order[start : start + batch_size].to(self.labels.device)
                yield self.images[idx], self.labels[idx]


@dataclass(frozen=True, eq=False)
class DataSplits:
    """The four splits of one dataset plus what later stages need to feed a model.

    ``*_indices`` index the train pool (the official training set) and document the split;
    ``mean``/``std`` are per-channel statistics of ``train`` in [0, 1] scale.
    """

    name: str
    classes: tuple[str, ...]
    train: Images
    search: Images
    calib: Images
    test: Images
    channels: int
    image_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    train_indices: Tensor
    search_indices: Tensor
    calib_indices: Tensor
    origin: str = ""
    #: how images are cropped (family.json's ``preprocessing.crop_ratio``): None resizes the whole
    #: image to the resolution; r resizes the shorter side to ceil(resolution / r) and centre-crops
    crop_ratio: float | None = None
    _fingerprint: list[str] = field(default_factory=list, init=False, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def fingerprint(self) -> str:
        """sha256 hex over name, classes, shapes, split indices and each split's content (image
        and label bytes when preloaded; file list, labels and crop when streamed).

        Later stages key caches (trained supernets, accuracy tables) on it, so it must change
        whenever the data or the split changes and never otherwise. Memoised: hashing is ~0.1 s.
        """
        if not self._fingerprint:
            h = hashlib.sha256()
            meta = f"famc-data-v1|{self.name}|{'|'.join(self.classes)}|{self.channels}|"
            h.update(f"{meta}{self.image_size}".encode())
            for label, idx in (
                ("train_idx", self.train_indices),
                ("search_idx", self.search_indices),
                ("calib_idx", self.calib_indices),
            ):
                h.update(label.encode())
                h.update(_tensor_bytes(idx.to(torch.int64)))
            for label, split in (
                ("train", self.train),
                ("search", self.search),
                ("calib", self.calib),
                ("test", self.test),
            ):
                split.digest(h, label)
            self._fingerprint.append(h.hexdigest())
        return self._fingerprint[0]


def _tensor_bytes(t: Tensor) -> memoryview:
    """Raw bytes of a tensor without copying when it is already contiguous on CPU."""
    arr = t.detach().cpu().contiguous().numpy()
    return arr.reshape(-1).view(np.uint8).data


def split_indices(
    n_pool: int, search_size: int | None, calib_size: int | None, seed: int
) -> tuple[Tensor, Tensor, Tensor]:
    """Apply the module-level split rule; returns sorted (train, search, calib) pool indices.

    ``search_size=None`` means ``min(10000, n_pool // 6)`` (exactly 10000 for Fashion-MNIST, a sane
    share for small folders); ``calib_size=None`` means ``min(2000, len(train))``. Explicit values
    are validated, never clipped, so a typo cannot silently shrink a split.
    """
    _check_int("seed", seed, minimum=None)
    if n_pool < 2:
        raise FamcError(
            f"only {n_pool} training image(s): need at least 2 to carve a search split; add images"
        )
    if search_size is None:
        search_size = min(DEFAULT_SEARCH_SIZE, max(1, n_pool // 6))
    _check_int("search_size", search_size, minimum=1)
    assert isinstance(search_size, int)
    if search_size >= n_pool:
        raise FamcError(
            f"search_size={search_size} must be smaller than the {n_pool} training images; "
            f"pass a smaller search_size"
        )
    if calib_size is None:
        calib_size = min(DEFAULT_CALIB_SIZE, n_pool - search_size)
    _check_int("calib_size", calib_size, minimum=1)
    assert isinstance(calib_size, int)
    n_train = n_pool - search_size
    if calib_size > n_train:
        raise FamcError(
            f"calib_size={calib_size} exceeds the {n_train} images left in the train split "
            f"(training images {n_pool} - search_size {search_size}); pass a smaller calib_size"
        )
    g = torch.Generator().manual_seed(seed)
    perm = torch.randperm(n_pool, generator=g)
    search = perm[:search_size].sort().values
    train = perm[search_size:].sort().values
    perm2 = torch.randperm(n_train, generator=g)
    calib = train[perm2[:calib_size].sort().values]
    return train, search, calib


def _check_int(name: str, value: object, *, minimum: int | None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise FamcError(f"{name} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise FamcError(f"{name} must be >= {minimum}, got {value}")


def channel_stats(images: Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] scale, rounded to 4 decimals, via exact 256-bin histograms.

    Histograms avoid materialising a float copy of the dataset (~0.05 s for Fashion-MNIST). A
    zero std (constant channel) is reported as 1.0 so normalisation never divides by zero.
    """
    means: list[float] = []
    stds: list[float] = []
    values = torch.arange(256, dtype=torch.float64) / 255.0
    for c in range(images.shape[1]):
        counts = torch.bincount(images[:, c].reshape(-1).cpu(), minlength=256).to(torch.float64)
        total = counts.sum()
        mean = float((counts * values).sum() / total)
        var = float((counts * values.square()).sum() / total) - mean * mean
        std = round(max(var, 0.0) ** 0.5, 4)
        means.append(round(mean, 4))
        stds.append(std if std > 0 else 1.0)
    return tuple(means), tuple(stds)


def make_splits(
    *,
    name: str,
    classes: Sequence[str],
    pool: Images,
    test: Images,
    search_size: int | None,
    calib_size: int | None,
    seed: int,
    origin: str = "",
    stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
    crop_ratio: float | None = None,
) -> DataSplits:
    """Carve ``pool`` (the official training set) into train/search/calib and attach stats:
    ``stats`` (mean, std) when given, else measured on a preloaded ``train``."""
    train_idx, search_idx, calib_idx = split_indices(len(pool), search_size, calib_size, seed)
    train = pool.subset(train_idx)
    if stats is None:
        if not isinstance(train, ImageSet):
            raise FamcError(f"dataset {name!r} is streamed: give its mean and std")
        stats = channel_stats(train.images)
    mean, std = stats
    return DataSplits(
        name=name,
        classes=tuple(classes),
        train=train,
        search=pool.subset(search_idx),
        calib=pool.subset(calib_idx),
        test=test,
        channels=pool.channels,
        image_size=pool.image_size,
        mean=mean,
        std=std,
        train_indices=train_idx,
        search_indices=search_idx,
        calib_indices=calib_idx,
        origin=origin,
        crop_ratio=crop_ratio,
    )


def to_input(
    images_uint8: Tensor,
    resolution: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    channels_last: bool = True,
) -> Tensor:
    """Turn a uint8 N×C×H×W batch into the float32 tensor a model consumes.

    Scales to [0, 1], bilinearly resizes (``align_corners=False, antialias=False``, matching what
    exported models see) only when ``resolution`` differs from the native size, normalises by
    ``mean``/``std``, and by default returns channels-last memory, which is faster for convs.
    """
    if images_uint8.dtype != torch.uint8 or images_uint8.dim() != 4:
        raise ValueError(
            f"to_input expects uint8 N×C×H×W, got {images_uint8.dtype} {tuple(images_uint8.shape)}"
        )
    c = images_uint8.shape[1]
    if len(mean) != c or len(std) != c:
        raise ValueError(f"mean/std need {c} values (one per channel), got {len(mean)}/{len(std)}")
    if resolution < 1:
        raise ValueError(f"resolution must be >= 1, got {resolution}")
    x = images_uint8.to(torch.float32).div_(255.0)
    if x.shape[-2] != resolution or x.shape[-1] != resolution:
        x = F.interpolate(
            x, size=(resolution, resolution), mode="bilinear", align_corners=False, antialias=False
        )
    m = torch.tensor(mean, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    s = torch.tensor(std, dtype=torch.float32, device=x.device).view(1, c, 1, 1)
    x = x.sub_(m).div_(s)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x


class InputBatches(Sequence[Tensor]):
    """Model inputs of a set at one resolution, batch by batch, prepared afresh on every pass.

    It is what an evaluator reads for a streamed set instead of a cached list: slicing (by batch)
    narrows the range without decoding anything, so memory is a few batches whatever the set's
    size."""

    def __init__(self, images: Images, batch_size: int, resolution: int, mean: Sequence[float],
                 std: Sequence[float], start: int = 0, stop: int | None = None) -> None:  # fmt: skip
        self.images, self.batch_size, self.resolution = images, batch_size, resolution
        self.mean, self.std = tuple(mean), tuple(std)
        whole = range(-(-len(images) // batch_size))[start:stop]
        self.start, self.stop = whole.start, whole.stop

    def __len__(self) -> int:
        return max(0, self.stop - self.start)

    @overload
    def __getitem__(self, index: int) -> Tensor: ...

    @overload
    def __getitem__(self, index: slice) -> InputBatches: ...

    def __getitem__(self, index: int | slice) -> Tensor | InputBatches:
        if isinstance(index, slice):
            if index.step not in (None, 1):
                raise ValueError("InputBatches slices take no step")
            r = range(self.start, self.stop)[index]
            return InputBatches(self.images, self.batch_size, self.resolution, self.mean,
                                self.std, r.start, r.stop)  # fmt: skip
        i = range(self.start, self.stop)[index] - self.start
        return next(iter(self[i : i + 1]))

    def __iter__(self) -> Iterator[Tensor]:
        b, n = self.batch_size, len(self.images)
        whole = self.start == 0 and self.stop * b >= n
        part = (
            self.images
            if whole
            else self.images.subset(range(self.start * b, min(self.stop * b, n)))
        )
        for x, _ in part.batches(b, resolution=self.resolution):
            yield to_input(x, self.resolution, self.mean, self.std, channels_last=True)
