"""Reading and writing files: one validated loader for every YAML/JSON file famc reads, atomic
writes, and content hashes.

A crash mid-export must never leave a half-written artifact under the final name, because
``famc verify`` and deploy scripts trust whatever file sits there; and every file a user hands famc
is decoded and validated in one place, so a bad one is always one line naming the file and field.
"""

from __future__ import annotations

import ctypes
import errno
import glob
import hashlib
import json
import os
import re
import shutil
import socket
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


RELEASE_MARKER = ".famc-release"  # in every directory famc publishes; --force replaces only these


def check_output_dir(path: Path, force: bool, inputs: Collection[Path]) -> None:
    """Refuse an output that famc must not write: an existing one without ``--force``, one famc
    did not make, a file, a dangling link, a name the OS cannot hold, or one holding an input."""
    _check_name_limits(path)
    if path.is_symlink() and not path.exists():
        raise FamcError(f"{path}: a symlink to a missing path; remove it or choose another --out")
    if path.exists() and not force:
        raise FamcError(f"{path} already exists: pass --force to replace it, or --out DIR")
    if path.exists() and not path.is_dir():
        raise FamcError(f"{path} is a file, not a release directory; choose another --out")
    if path.exists() and not (path / RELEASE_MARKER).is_file():
        raise FamcError(
            f"{path} exists and was not written by famc (no {RELEASE_MARKER}): --force replaces "
            "only famc releases; choose another --out"
        )
    target = path.resolve()
    for item in inputs:
        if target == item.resolve() or target in item.resolve().parents:
            raise FamcError(
                f"--out {path} holds an input of this build ({item}); a release replaced with "
                "--force would delete it: choose another --out"
            )


def _check_name_limits(path: Path) -> None:
    longest = max((len(os.fsencode(part)) for part in path.parts), default=0)
    if longest > 255 or len(os.fsencode(str(path.resolve()))) > 4000:
        raise FamcError(
            f"{str(path)[:60]}...: path too long for the filesystem; choose a shorter one"
        )


@contextmanager
def staged_directory(path: Path) -> Iterator[Path]:
    """Yield a hidden sibling directory to fill; only when the block succeeds is it published
    under ``path`` (an existing famc release is swapped out atomically, then removed).

    The staging directory's name carries this host and process, so the next run can tell a dead
    run's leftovers from a live one's; those are removed first, and a release a killed run left
    parked is put back. Nothing famc did not name or mark is ever deleted.
    """
    path = path.absolute()
    _clean_stale(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.{_owner_tag()}-", suffix=".tmp.build",
                                dir=path.parent))  # fmt: skip
    try:
        yield tmp
        write_text(tmp / RELEASE_MARKER, json.dumps({"famc": _version()}) + "\n")
        _publish(tmp, path)
    finally:
        if tmp.exists():
            remove(tmp)  # our own staging directory (or, after a swap, the replaced release)


def _publish(tmp: Path, path: Path) -> None:
    """Put ``tmp`` under ``path``: an atomic exchange where the OS has one, so a reader (or a kill)
    sees the old release or the new one, never none."""
    if not path.exists():
        os.rename(tmp, path)
        return
    if _exchange(tmp, path):
        return  # tmp now holds the old release: the caller removes it
    parked = tmp_sibling(path, ".old")
    os.rename(path, parked)  # fallback: a kill here leaves the old release parked, restored later
    os.rename(tmp, path)
    remove(parked)


def replace(src: Path, dst: Path) -> None:
    """Move ``src`` over ``dst``; a directory is swapped atomically, then the old one removed."""
    if src.is_dir() and dst.exists():
        _publish(src, dst)
        if src.exists():
            remove(src)  # the replaced directory, now under our temporary name
    else:
        os.replace(src, dst)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); False where unsupported."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if fn is None:
        return False
    if fn(-100, os.fsencode(a), -100, os.fsencode(b), 2) == 0:  # AT_FDCWD, RENAME_EXCHANGE
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _clean_stale(path: Path) -> None:
    """Remove staging directories of dead famc processes, and releases a killed run swapped out
    (restoring one when nothing is published under ``path``); anything else is left alone."""
    if not path.parent.is_dir():
        return
    for p in path.parent.glob(f".{glob.escape(path.name)}.*.tmp.*"):
        owner = re.fullmatch(
            rf"\.{re.escape(path.name)}\.([0-9a-f]{{8}})-(\d+)-.*\.tmp\.build", p.name
        )
        if owner and owner[1] == _host_tag() and not _alive(int(owner[2])):
            remove(p)
        elif p.name.endswith(".tmp.old") and (p / RELEASE_MARKER).is_file():
            if path.exists():
                remove(p)
            else:
                os.rename(p, path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _owner_tag() -> str:
    return f"{_host_tag()}-{os.getpid()}"


def _version() -> str:
    from famc import __version__

    return __version__


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


def size_path(path: Path) -> int:
    """Bytes of a file, or of all files of a directory."""
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


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


def load_json(model: type[M], path: Path | str, what: str, fix: str = "") -> M:
    """Read ``path`` as JSON and validate it as ``model``; every problem is one line."""
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FamcError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}); {fix}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FamcError(format_validation_error(path, exc, f"invalid {what}", fix)) from None


def first_line(exc: BaseException) -> str:
    """An exception's message cut to its first line (libraries' messages run to pages)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def read_torch(path: Path | str, what: str, fix: str) -> Any:
    """``torch.load(weights_only=True)``: tensors and plain containers only, never code."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a refused pickle, a truncated zip, ...: one line, not six
        raise FamcError(f"{path}: not a readable weights-only {what} ({first_line(exc)}); "
                        f"{fix}") from None  # fmt: skip


def read_tensors(path: Path | str, what: str, fix: str) -> dict[str, Any]:
    """The tensors of a safetensors file, or one line saying it is missing or damaged."""
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FamcError(f"{path}: no such {what}; {fix}")
    try:
        return load_file(str(path))
    except Exception as exc:  # safetensors raises its own error types for damaged files
        raise FamcError(f"{path}: not a readable {what} ({first_line(exc)}); {fix}") from None


def load_yaml(model: type[M], path: Path | str, what: str, fix: str = "") -> M:
    """Read ``path`` and validate it as ``model``; every problem is a ``file: field`` line."""
    data = read_yaml(path, what)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise FamcError(format_validation_error(path, exc, f"invalid {what}", fix)) from None
