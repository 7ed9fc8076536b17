"""Atomic file/directory writes and content hashes shared by every stage that writes files.

A crash mid-export must never leave a half-written artifact under the final name, because
``famc verify`` and deploy scripts trust whatever file sits there.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_UMASK = os.umask(0)
os.umask(_UMASK)


def tmp_sibling(path: Path, suffix: str = "") -> Path:
    """A unique, not-yet-existing sibling of ``path`` (same filesystem, so rename is atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    os.unlink(name)
    return Path(name)


@contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temp sibling to write to; it replaces ``path`` only if the block succeeds."""
    tmp = tmp_sibling(path, suffix)
    try:
        yield tmp
        if tmp.is_file():  # some writers create 0600 files; a release is meant to be read
            tmp.chmod((tmp.stat().st_mode & 0o7777) | (0o644 & ~_UMASK))
        replace(tmp, path)
    finally:
        remove(tmp)


def replace(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst``; directories are swapped by renames so no reader sees a mix."""
    if src.is_dir() and dst.exists():
        old = tmp_sibling(dst, ".old")
        os.replace(dst, old)
        os.replace(src, dst)
        remove(old)
    else:
        os.replace(src, dst)


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_bytes(path: Path, data: bytes) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return path


def write_text(path: Path, text: str, mode: int | None = None) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
        if mode is not None:
            tmp.chmod(mode)
    return path


def sha256_path(path: Path) -> str:
    """SHA-256 of a file, or of a directory (``.mlpackage``) as sorted (relpath, bytes) pairs."""
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(p for p in path.rglob("*") if p.is_file()):
            h.update(f.relative_to(path).as_posix().encode() + b"\0")
            _feed(h, f)
    else:
        _feed(h, path)
    return h.hexdigest()


def _feed(h: hashlib._Hash, f: Path) -> None:
    with f.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
