"""Reading and writing files: one validated loader for every YAML/JSON file famc reads, atomic
writes, and content hashes.

A crash mid-export must never leave a half-written artifact under the final name, because
``famc verify`` and deploy scripts trust whatever file sits there; and every file a user hands famc
is decoded and validated in one place, so a bad one is always one line naming the file and field.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from famc.errors import FamcError, format_validation_error

M = TypeVar("M", bound=BaseModel)


def known(registry: Collection[str], what: str) -> Callable[[str], str]:
    """A validator for a string that must name an entry of ``registry`` (a famc registry)."""

    def check(value: str) -> str:
        if value not in registry:
            raise ValueError(f"unknown {what} {value!r}; choose one of {', '.join(registry)}")
        return value

    return check


class Strict(BaseModel):
    """Base of every model read from a user's file: unknown keys are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


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


@contextmanager
def staged_directory(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling directory to fill; it replaces ``path`` only if the block succeeds."""
    tmp = tmp_sibling(path.resolve(), ".build")
    tmp.mkdir()
    try:
        yield tmp
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


def read_text(path: Path | str, what: str = "file") -> str:
    """The UTF-8 text of ``path``, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FamcError(f"{path}: no such {what}")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise FamcError(f"{path}: not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise FamcError(f"{path}: cannot read it ({exc.strerror or exc})") from None


def read_yaml(path: Path | str, what: str = "config file") -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file (and the line of a syntax error)."""
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise FamcError(f"{path}: not valid YAML{where}; fix the syntax") from None
    if not isinstance(data, dict):
        raise FamcError(f"{path}: expected a mapping of settings at the top level")
    return data


def load_yaml(model: type[M], path: Path | str, what: str, fix: str = "") -> M:
    """Read ``path`` and validate it as ``model``; every problem is a ``file: field`` line."""
    data = read_yaml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FamcError(format_validation_error(path, exc, f"invalid {what}", fix)) from None
