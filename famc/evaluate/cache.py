"""Correctness vectors cached on disk, so repeated searches and rebuilds re-evaluate nothing.

A result is valid only for one (architecture, supernet weights, data split, evaluation settings)
combination, so the key hashes all of them. The file is append-only JSON lines: a killed build keeps
every evaluation it finished, and concurrent writers at worst duplicate a line.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from famc.evaluate.engine import Evaluator
from famc.metrics import pack_correct, unpack_correct
from famc.prepare import Prepared
from famc.space import Arch


def result_key(arch: Arch, context: str) -> str:
    """Stable key of one architecture's result within an evaluation context."""
    payload = json.dumps(arch.to_dict(), sort_keys=True) + "|" + context
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


class ResultCache:
    """Correctness vectors by key, persisted to ``path`` (memory only when ``path`` is None)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._mem: dict[str, tuple[int, str]] = {}
        self.hits = 0
        if path is not None and path.exists():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                    self._mem[row["key"]] = (int(row["n"]), row["bits"])
                except (ValueError, KeyError):
                    continue  # a line cut short by a kill: that result is simply recomputed

    def get(self, key: str) -> torch.Tensor | None:
        hit = self._mem.get(key)
        if hit is None:
            return None
        self.hits += 1
        return unpack_correct(hit[1], hit[0])

    def put(self, key: str, correct: torch.Tensor) -> None:
        row = (correct.numel(), pack_correct(correct))
        self._mem[key] = row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "n": row[0], "bits": row[1]}) + "\n")

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
        self.cache = ResultCache(cache_dir / f"{p.space.name}-{sha[:12]}-{fingerprint[:12]}.jsonl")
        self.splits = {"search": p.search_split, "test": p.data.test}
        self.evaluated = 0

    def correct(self, arch: Arch, split: str) -> torch.Tensor:
        images = self.splits[split]
        key = result_key(arch, f"{self.context}|{split}={len(images)}")
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        vec = self.evaluator.correct(arch, images)
        self.evaluated += 1
        self.cache.put(key, vec)
        return vec

    def search_vector(self, arch: Arch) -> torch.Tensor:
        return self.correct(arch, "search")
