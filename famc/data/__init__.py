"""Datasets with deterministic train/search/calib/test splits, preloaded or streamed.

Small datasets are preloaded as uint8 tensors (Fashion-MNIST is ~55 MB), so later stages index them
directly and call :func:`to_input` per batch. An image folder with ``data.stream`` is held as file
lists and decoded from disk per batch by worker processes (:mod:`famc.data.stream`), for folders
larger than RAM. The split rule is documented in :mod:`famc.data.splits`; dataset discovery in
:mod:`famc.data.fashion` and :mod:`famc.data.folder`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

from pydantic import AfterValidator, model_validator

from famc.data.fashion import FASHION_CLASSES, load_fashion_mnist, read_idx
from famc.data.folder import load_image_folder
from famc.data.preprocessing import METADATA_KEY, Preprocessing
from famc.data.splits import (
    DEFAULT_CALIB_SIZE,
    DEFAULT_SEARCH_SIZE,
    DataSplits,
    Images,
    ImageSet,
    InputBatches,
    channel_stats,
    make_splits,
    split_indices,
    to_input,
)
from famc.data.stream import FolderStream, StreamConfig, stream_image_folder
from famc.errors import FamcError
from famc.io import Strict, known

__all__ = [
    "DATASETS",
    "DataConfig",
    "DEFAULT_CALIB_SIZE",
    "DEFAULT_SEARCH_SIZE",
    "FASHION_CLASSES",
    "METADATA_KEY",
    "DataSplits",
    "FolderStream",
    "Images",
    "ImageSet",
    "InputBatches",
    "Preprocessing",
    "StreamConfig",
    "channel_stats",
    "load_dataset",
    "load_fashion_mnist",
    "load_image_folder",
    "make_splits",
    "read_idx",
    "split_indices",
    "to_input",
]

_FOLDER_DEFAULT_IMAGE_SIZE = 32
_FOLDER_DEFAULT_CHANNELS = 3

#: A dataset reader: ``(root, image_size, channels, download, stream) -> (classes, pool, test,
#: origin)``; ``stream`` (None: preload) is how to stream it from disk.
Reader = Callable[
    [str | os.PathLike[str] | None, int | None, int | None, bool, StreamConfig | None],
    tuple[tuple[str, ...], Images, Images, str],
]


def _fashion(
    root: str | os.PathLike[str] | None, image_size: int | None, channels: int | None,
    download: bool, stream: StreamConfig | None,
) -> tuple[tuple[str, ...], Images, Images, str]:  # fmt: skip
    if stream is not None:
        raise FamcError("fashion-mnist is preloaded (55 MB); drop `data.stream`")
    if image_size not in (None, 28) or channels not in (None, 1):
        raise FamcError(
            f"fashion-mnist is 28x28 grayscale; got image_size={image_size}, "
            f"channels={channels}: drop them and resize at feed time with to_input()"
        )
    pool, test, directory = load_fashion_mnist(root, download=download)
    return FASHION_CLASSES, pool, test, str(directory)


def _folder(
    root: str | os.PathLike[str] | None, image_size: int | None, channels: int | None,
    download: bool, stream: StreamConfig | None,
) -> tuple[tuple[str, ...], Images, Images, str]:  # fmt: skip
    if root is None:
        raise FamcError("dataset 'folder' needs root=<dir> holding <class_name>/ image folders")
    size = _FOLDER_DEFAULT_IMAGE_SIZE if image_size is None else image_size
    channels = _FOLDER_DEFAULT_CHANNELS if channels is None else channels
    if stream is None:
        classes, pool, test = load_image_folder(root, image_size=size, channels=channels)
        return classes, pool, test, str(root)
    classes, streamed, streamed_test = stream_image_folder(
        root, image_size=size, channels=channels, config=stream
    )
    return classes, streamed, streamed_test, str(root)


DATASETS: dict[str, Reader] = {"fashion-mnist": _fashion, "folder": _folder}


def load_dataset(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    search_size: int | None = None,
    calib_size: int | None = None,
    seed: int = 0,
    image_size: int | None = None,
    channels: int | None = None,
    download: bool = True,
    stream: StreamConfig | None = None,
) -> DataSplits:
    """Load ``name`` (one of :data:`DATASETS`) and split it by the documented seeded rule.

    ``search_size=None`` means ``min(10000, pool // 6)`` (10000 for Fashion-MNIST, and a sane
    share for small folders); ``calib_size=None`` means ``min(2000, len(train))``. Explicit values
    are validated, never clipped. ``image_size``/``channels`` pick the folder reader's output
    (default 32 / 3); Fashion-MNIST is natively 28×28×1 — resize at feed time with :func:`to_input`.
    ``stream`` streams a folder from disk with its given mean/std and crop.
    """
    key = name.strip().lower().replace("_", "-") if isinstance(name, str) else name
    if key not in DATASETS:
        raise FamcError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    classes, pool, test, origin = DATASETS[key](root, image_size, channels, download, stream)
    stats = None if stream is None else (stream.mean, stream.std)
    return make_splits(name=str(key), classes=classes, pool=pool, test=test,
                       search_size=search_size, calib_size=calib_size, seed=seed, origin=origin,
                       stats=stats, crop_ratio=None if stream is None else stream.crop_ratio)  # fmt: skip


class DataConfig(Strict):
    """The ``data:`` section of every config: which dataset, and how it is split."""

    name: Annotated[str, AfterValidator(known(DATASETS, "dataset"))] = "fashion-mnist"
    root: str | None = None
    search_size: int | None = None
    calib_size: int | None = None
    seed: int = 0
    image_size: int | None = None
    channels: int | None = None
    stream: StreamConfig | None = None  # None: preload every image into RAM

    @model_validator(mode="after")
    def _stats_per_channel(self) -> DataConfig:
        channels = _FOLDER_DEFAULT_CHANNELS if self.channels is None else self.channels
        s = self.stream
        if s is not None and (len(s.mean) != channels or len(s.std) != channels):
            raise ValueError(f"stream.mean and stream.std need {channels} values (one per "
                             f"channel), got {len(s.mean)} and {len(s.std)}: set both")  # fmt: skip
        return self

    def load(self) -> DataSplits:
        return load_dataset(self.name, self.root, search_size=self.search_size,
                            calib_size=self.calib_size, seed=self.seed,
                            image_size=self.image_size, channels=self.channels,
                            stream=self.stream)  # fmt: skip
