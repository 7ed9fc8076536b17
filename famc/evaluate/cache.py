"""Correctness vectors cached on disk, so repeated searches and rebuilds re-evaluate nothing.

A result is valid only for one (architecture, supernet weights, data split, evaluation settings)
combination, so the key hashes all of them. The file is append-only JSON lines: a killed build keeps
every evaluation it finished; concurrent builds share it (each line is one ``O_APPEND`` write, and
each build reads what the others appended before it evaluates), at worst duplicating a line.
"""

from __future__ import annotations

import binascii
import hashlib
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from famc.device import resolve_device
from famc.evaluate.backends import BackendSettings, Job, make_backend
from famc.evaluate.engine import Evaluator
from famc.metrics import pack_correct, unpack_correct
from famc.prepare import Prepared
from famc.search.family import SearchVectors
from famc.search.race import Race
from famc.space import Arch


def result_key(arch: Arch, context: str) -> str:
    """Stable key of one architecture's result within an evaluation context."""
    payload = json.dumps(arch.to_dict(), sort_keys=True) + "|" + context
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _checksum(key: str, n: int, bits: str) -> str:
    return hashlib.sha256(f"{key}|{n}|{bits}".encode()).hexdigest()[:16]


#: Where a cache line starts: a line torn by a killed writer may run into the next one.
_LINE_START = re.compile(rb'(?={"key": ")')


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
        self._read = 0  # bytes of the file read so far
        self._torn_at = -1  # offset of an unterminated last line already counted in ``bad``
        self.refresh()

    def refresh(self) -> None:
        """Read the lines appended since the last read (by this build or a concurrent one); a
        last line still being written is left for the next refresh."""
        if self.path is None or not self.path.exists():
            return
        try:
            with open(self.path, "rb") as f:
                f.seek(self._read)
                raw = f.read()
        except OSError as exc:
            self._unusable(f"{self.path}: cannot be read ({exc.strerror or exc})")
            return
        complete = raw[: raw.rfind(b"\n") + 1]
        counted = self._torn_at == self._read  # its first fragment was counted as torn before
        self._read += len(complete)
        for line in complete.splitlines():
            for piece in filter(None, _LINE_START.split(line)):
                row = _parse(piece)
                if row is not None:
                    self._keep(row[0], row[1], row[2])
                elif not counted:
                    self.bad += 1
                counted = False
        if len(complete) < len(raw) and self._torn_at != self._read:  # torn, or being written
            self.bad, self._torn_at = self.bad + 1, self._read

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
            vec = unpack_correct(hit[1], hit[0])
        except (ValueError, binascii.Error):
            return None
        if vec.numel() != hit[0]:  # unpacking pads a short record with zeros: never trust that
            return None
        self.hits += 1
        return vec

    def put(self, key: str, correct: torch.Tensor) -> None:
        n, bits = correct.numel(), pack_correct(correct)
        self._keep(key, n, bits)
        if self.path is None:
            return
        line = json.dumps({"key": key, "n": n, "bits": bits, "sum": _checksum(key, n, bits)})
        data = (line + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                if os.write(fd, data) != len(data):  # a short write would tear the line
                    raise OSError(f"short write of {len(data)} bytes")
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

    def __init__(self, p: Prepared, backend: BackendSettings | None = None,
                 log: Callable[[str], None] = print) -> None:  # fmt: skip
        ev = p.cfg.evaluation
        device = resolve_device(
            ev.device, "evaluation.device", "use `cpu` or `auto`, or run on a GPU host"
        )
        self.evaluator = Evaluator(p.net, p.calib, p.data.mean, p.data.std,
                                   batch_size=ev.batch_size,
                                   bn_convention=ev.bn_convention,  # type: ignore[arg-type]
                                   device=device, amp=ev.amp)  # fmt: skip
        fingerprint, sha = p.inputs.data_fingerprint, p.inputs.supernet_sha256
        self.context = (
            f"famc-eval-v2|{sha}|{fingerprint}|bn={ev.bn_convention}"
            f"|calib={len(p.calib)}|batch={ev.batch_size}"
        )
        if device.type != "cpu":  # other numerics: results of their own
            self.context += f"|device={device.type}{'+amp' if ev.amp else ''}"
        cache_dir = Path(ev.cache_dir) if ev.cache_dir else default_cache_dir()
        self.cache_path = cache_dir / f"{p.space.name}-{sha[:12]}-{fingerprint[:12]}.jsonl"
        self.cache = ResultCache(self.cache_path)
        self.splits = {"search": p.search_split, "test": p.data.test}
        self.evaluated = 0
        self.backend = make_backend(p, self.evaluator, self.splits, backend or BackendSettings(),
                                    log)  # fmt: skip

    def close(self) -> None:
        """Release the backend's workers (a Ray cluster this build started)."""
        self.backend.close()

    def correct(self, arch: Arch, split: str, race: Race | None = None) -> torch.Tensor:
        """``arch``'s vector on ``split``: from the cache, else computed (and stored). With a
        ``race`` it may be a prefix of the split (the candidate was stopped)."""
        return self.correct_many([arch], split, race)[0]

    def correct_many(self, archs: Sequence[Arch], split: str,
                     race: Race | None = None) -> list[torch.Tensor]:  # fmt: skip
        """Vectors of several architectures: cached ones read, the rest computed by the backend in
        one call (in parallel on workers) and stored. A repeated architecture is computed once."""
        n = len(self.splits[split])
        keys = [result_key(a, f"{self.context}|{split}={n}") for a in archs]
        self.cache.refresh()
        found: dict[str, torch.Tensor] = {}
        todo: dict[str, Job] = {}
        for key, arch in zip(keys, archs, strict=True):
            if key in found or key in todo:
                self.cache.hits += 1  # what evaluating one by one would have found cached
                continue
            have = self.cache.get(key, n)
            if have is not None and (
                have.numel() == n
                or (race is not None and have.numel() >= race.images and not race.keep_going(have))
            ):
                found[key] = have
            else:
                todo[key] = Job(arch, have)
        for key, vec in zip(todo, self.backend.run(list(todo.values()), split, race), strict=True):
            self.evaluated += 1
            self.cache.put(key, vec)
            found[key] = vec
        return [found[k] for k in keys]

    def notes(self) -> list[str]:
        """What the build log should say about the cache: damaged entries, an unusable file."""
        out = [self.cache.problem] if self.cache.problem else []
        if self.cache.bad:
            out.append(f"evaluation cache: ignored {self.cache.bad} damaged entr(y/ies) in "
                       f"{self.cache_path}; they are recomputed")  # fmt: skip
        return out

    @property
    def search_vectors(self) -> SearchVectors:
        """What the search scores candidates with: this build's search-split vectors."""
        return SearchVectors(
            len(self.splits["search"]), lambda archs, race: self.correct_many(archs, "search", race)
        )
