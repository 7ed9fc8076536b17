"""Image folders streamed from disk: file lists in RAM, pixels decoded per batch by worker processes.

An ImageNet-sized folder (1.3 M images) does not fit in RAM as pixels, but its file list does (tens
of MB as a byte-string array). A :class:`FolderStream` is one split as a file list; each pass decodes
its batches in a process pool, in order, with at most ``PREFETCH`` batches in flight, so memory stays
a few batches whatever the folder's size. Splits are chosen by file list with the seeded rule of
:mod:`famc.data.splits`, and the data fingerprint hashes the lists (relative paths, labels, crop), so
a cached evaluation is never reused for other files (file sizes are hashed too, which catches
a file replaced in place).

Preprocessing is OFA's ImageNet evaluation: the shorter side resized (bilinear) to
``ceil(resolution / crop_ratio)``, a centre crop of ``resolution``², then ``mean``/``std``; with
``crop_ratio: null`` the whole image is resized to ``image_size``² as the preloaded reader does.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import Tensor

from famc.data.folder import check_image_args, read_image, scan_image_folder
from famc.data.splits import _tensor_bytes
from famc.io import Strict

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "PREFETCH", "FolderStream", "StreamConfig",
           "Transform", "stream_image_folder"]  # fmt: skip

#: Batches decoded ahead of the one being consumed (each split over the workers).
PREFETCH = 2
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class StreamConfig(Strict):
    """``data.stream``: decode a ``folder`` dataset from disk batch by batch instead of preloading
    it (what an ImageNet-sized folder needs). Its mean/std are given, not measured: measuring them
    would mean reading the whole train split; the defaults are ImageNet's, as OFA's supernets use."""

    workers: int = Field(4, ge=0)  # decoding processes; 0 decodes in the calling process
    crop_ratio: float | None = Field(0.875, gt=0, le=1)  # None: resize the whole image
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD


@dataclass(frozen=True)
class Transform:
    """How one file becomes uint8 pixels (picklable: it travels to the decoding processes)."""

    channels: int
    image_size: int  # the size when no resolution is asked for (and always, without a crop)
    crop_ratio: float | None

    def size(self, resolution: int | None) -> int:
        """Decode size: a crop is taken at the model's resolution; a whole-image resize is done
        at ``image_size`` and resized at feed time by ``to_input``, exactly as when preloaded."""
        return self.image_size if resolution is None or self.crop_ratio is None else resolution


def _decode(root: str, files: list[bytes], t: Transform, size: int) -> np.ndarray:
    return np.stack([read_image(os.path.join(root, os.fsdecode(f)), t.channels, size,
                                t.crop_ratio) for f in files])  # fmt: skip


def _as_tensor(pixels: np.ndarray) -> Tensor:
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


_POOLS: dict[int, ProcessPoolExecutor] = {}


def _pool(workers: int) -> ProcessPoolExecutor:
    """One persistent pool per size and process: starting processes per pass would cost more
    than decoding a calibration set. Forked, as torch's DataLoader does: ``spawn``/``forkserver``
    would re-run a caller's script lacking a ``__main__`` guard; the children use only PIL."""
    if workers not in _POOLS:
        ctx = multiprocessing.get_context("fork")
        _POOLS[workers] = ProcessPoolExecutor(workers, mp_context=ctx)
    return _POOLS[workers]


@dataclass(frozen=True, eq=False)
class FolderStream:
    """One split of an image folder as a file list, decoded from disk on every pass."""

    root: str
    files: np.ndarray  # relative paths as bytes (numpy ``S``: ~40 MB for ImageNet's train set)
    labels: Tensor
    transform: Transform
    workers: int = 0
    preloaded: ClassVar[bool] = False

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def channels(self) -> int:
        return self.transform.channels

    @property
    def image_size(self) -> int:
        return self.transform.image_size

    def subset(self, indices: Tensor | Sequence[int]) -> FolderStream:
        idx = torch.as_tensor(indices, dtype=torch.int64)
        return FolderStream(self.root, self.files[idx.numpy()], self.labels[idx], self.transform,
                            self.workers)  # fmt: skip

    def digest(self, h: hashlib._Hash, label: str) -> None:
        """Paths, labels, crop and each file's size: a file replaced in place almost always changes
        size, so stale cached evaluations are not reused for it (a content hash would read the
        whole folder). Not mtimes: a copy on another node must keep the fingerprint."""
        t = self.transform
        h.update(f"{label}:stream:{len(self)}:{t.channels}:{t.image_size}:{t.crop_ratio}".encode())
        h.update(b"\0".join(self.files.tolist()))
        h.update(_tensor_bytes(self.labels))
        root = os.fsencode(self.root)
        sizes = [os.stat(os.path.join(root, f)).st_size for f in self.files.tolist()]
        h.update(np.asarray(sizes, dtype=np.int64).tobytes())

    def batches(self, batch_size: int, *, resolution: int | None = None, shuffle: bool = False,
                generator: torch.Generator | None = None,
                drop_last: bool = False) -> Iterator[tuple[Tensor, Tensor]]:  # fmt: skip
        """``(uint8 images, int64 labels)`` batches as :meth:`ImageSet.batches` yields them;
        cropped at ``resolution`` when the transform crops."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        stop = n - n % batch_size if drop_last else n
        chunks = [order[a : min(a + batch_size, n)] for a in range(0, stop, batch_size)]
        pixels = self._decoded(chunks, self.transform.size(resolution))
        for idx, x in zip(chunks, pixels, strict=True):
            yield x, self.labels[idx]

    def _decoded(self, chunks: list[Tensor], size: int) -> Iterator[Tensor]:
        files = [self.files[idx.numpy()].tolist() for idx in chunks]
        if not self.workers:
            for batch in files:
                yield _as_tensor(_decode(self.root, batch, self.transform, size))
            return
        pool, todo = _pool(self.workers), iter(files)
        window: deque[list[Future[np.ndarray]]] = deque()

        def submit() -> None:
            batch = next(todo, None)
            if batch is not None:
                step = -(-len(batch) // self.workers)
                window.append([pool.submit(_decode, self.root, batch[a : a + step],
                                           self.transform, size)
                               for a in range(0, len(batch), step)])  # fmt: skip

        try:
            for _ in range(PREFETCH + 1):
                submit()
            while window:
                parts = [f.result() for f in window.popleft()]
                submit()
                yield _as_tensor(np.concatenate(parts))
        finally:  # an abandoned pass (a raced candidate) leaves nothing queued
            for futures in window:
                for f in futures:
                    f.cancel()


def stream_image_folder(
    root: str | os.PathLike[str], *, image_size: int, channels: int, config: StreamConfig
) -> tuple[tuple[str, ...], FolderStream, FolderStream]:
    """``(classes, train_pool, test)`` of a folder tree as file lists (layouts: famc.data.folder)."""
    check_image_args(image_size, channels)
    files = scan_image_folder(root)
    base = Path(root).expanduser()
    t = Transform(channels, image_size, config.crop_ratio)

    def stream(paths: list[Path], labels: list[int]) -> FolderStream:
        rel = np.array([os.fsencode(p.relative_to(base)) for p in paths], dtype=np.bytes_)
        return FolderStream(str(base), rel, torch.tensor(labels, dtype=torch.int64), t,
                            config.workers)  # fmt: skip

    return files.classes, stream(*files.pool), stream(*files.test)
