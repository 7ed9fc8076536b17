"""Correctness vectors cached on disk, so repeated searches and rebuilds re-evaluate nothing.

A result is valid only for one (architecture, supernet weights, data split, evaluation settings)
combination, so the key hashes all of them. The file is append-only JSON lines: a killed build keeps
every evaluation it finished, and concurrent writers at worst duplicate a line.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from famc.evaluate.engine import Evaluator
from famc.metrics import pack_correct, unpack_correct
from famc.prepare import Prepared
from famc.search.race import Race
from famc.space import Arch


def result_key(arch: Arch, context: str) -> str:
    """Stable key of one architecture's result within an evaluation context."""
    payload = json.dumps(arch.to_dict(), sort_keys=True) + "|" + context
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _checksum(key: str, n: int, bits: str) -> str:
    return hashlib.sha256(f"{key}|{n}|{bits}".encode()).hexdigest()[:16]


def _parse(line: bytes) -> tuple[str, int, str] | None:
    """One cache line, or None when it is torn, edited or not a famc cache line at all."""
    try:
        row = json.loads(line)
        key, n, bits = str(row["key"]), int(row["n"]), str(row["bits"])
        return (key, n, bits) if row["sum"] == _checksum(key, n, bits) else None
    except (ValueError, KeyError, TypeError):
        return None


class ResultCache:
    """Correctness vectors by key, persisted to ``path`` (memory only when ``path`` is None).

    Every line carries a checksum, so a line torn by a kill, edited or corrupted is recomputed
    rather than trusted; each line is appended with one ``write`` on an ``O_APPEND`` descriptor,
    so concurrent builds or workers can share the file.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mem: dict[str, tuple[int, str]] = {}
        self.hits = 0
        self.bad = 0  # lines ignored as damaged
        self.problem: str | None = None  # why the file could not be used, if it could not
        if path is not None and path.exists():
            self._load(path)

    def _load(self, path: Path) -> None:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            self._unusable(f"{path}: cannot be read ({exc.strerror or exc})")
            return
        for line in raw.splitlines():
            row = _parse(line)
            if row is None:
                self.bad += 1
            else:
                self._keep(row[0], row[1], row[2])

    def _keep(self, key: str, n: int, bits: str) -> None:
        """Keep the longest vector seen for ``key``: a raced candidate's prefix is extended later
        when it survives a race."""
        if n > self._mem.get(key, (0, ""))[0]:
            self._mem[key] = (n, bits)

    def _unusable(self, why: str) -> None:
        self.path, self.problem = None, f"{why}; evaluations are kept in memory only"

    def get(self, key: str, n: int) -> torch.Tensor | None:
        """The vector (or prefix, after a race) stored for ``key`` if it has at most ``n``
        entries and decodes; else None."""
        hit = self._mem.get(key)
        if hit is None or hit[0] > n:
            return None
        try:
            vec = unpack_correct(hit[1], n)
        except (ValueError, binascii.Error):
            return None
        if vec.numel() != n:
            return None
        self.hits += 1
        return vec

    def put(self, key: str, correct: torch.Tensor) -> None:
        n, bits = correct.numel(), pack_correct(correct)
        self._keep(key, n, bits)
        if self.path is None:
            return
        line = json.dumps({"key": key, "n": n, "bits": bits, "sum": _checksum(key, n, bits)})
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (line + "\n").encode())
            finally:
                os.close(fd)
        except OSError as exc:
            self._unusable(f"{self.path}: cannot be written ({exc.strerror or exc})")

    def __len__(self) -> int:
        return len(self._mem)


def default_cache_dir() -> Path:
    root = os.environ.get("FAMC_CACHE_DIR")
    return (Path(root) if root else Path.home() / ".cache" / "famc") / "evals"


class CachedEvaluation:
    """Correctness vectors per (arch, split) of one prepared build, computed once and kept on disk
    across builds."""

    def __init__(self, p: Prepared) -> None:
        ev = p.cfg.evaluation
        self.evaluator = Evaluator(p.net, p.calib, p.data.mean, p.data.std,
                                   batch_size=ev.batch_size,
                                   bn_convention=ev.bn_convention)  # type: ignore[arg-type]  # fmt: skip
        fingerprint, sha = p.inputs.data_fingerprint, p.inputs.supernet_sha256
        self.context = (
            f"famc-eval-v2|{sha}|{fingerprint}|bn={ev.bn_convention}"
            f"|calib={len(p.calib)}|batch={ev.batch_size}"
        )
        cache_dir = Path(ev.cache_dir) if ev.cache_dir else default_cache_dir()
        self.cache_path = cache_dir / f"{p.space.name}-{sha[:12]}-{fingerprint[:12]}.jsonl"
        self.cache = ResultCache(self.cache_path)
        self.splits = {"search": p.search_split, "test": p.data.test}
        self.evaluated = 0

    def correct(self, arch: Arch, split: str, race: Race | None = None) -> torch.Tensor:
        """``arch``'s vector on ``split``: from the cache, else computed (and stored). With a
        ``race`` it may be a prefix of the split (the candidate was stopped)."""
        images = self.splits[split]
        n = len(images)
        key = result_key(arch, f"{self.context}|{split}={n}")
        have = self.cache.get(key, n)
        if have is not None and (
            have.numel() == n
            or (race is not None and have.numel() >= race.images and not race.keep_going(have))
        ):
            return have
        vec = self.evaluator.correct(arch, images, race, done=have)
        self.evaluated += 1
        self.cache.put(key, vec)
        return vec

    def correct_many(self, archs: Sequence[Arch], split: str,
                     race: Race | None = None) -> list[torch.Tensor]:  # fmt: skip
        """Vectors of several architectures (one call, so a backend may run them in parallel)."""
        return [self.correct(a, split, race) for a in archs]

    def notes(self) -> list[str]:
        """What the build log should say about the cache: damaged entries, an unusable file."""
        out = [self.cache.problem] if self.cache.problem else []
        if self.cache.bad:
            out.append(f"evaluation cache: ignored {self.cache.bad} damaged entr(y/ies) in "
                       f"{self.cache_path}; they are recomputed")  # fmt: skip
        return out

    def search_vectors(self, archs: Sequence[Arch], race: Race | None = None) -> list[torch.Tensor]:
        return self.correct_many(archs, "search", race)
