"""On-disk cache of correctness vectors, so repeated searches and rebuilds re-evaluate nothing.

A result is valid only for one (architecture, supernet weights, data split, evaluation settings)
combination, so the key hashes all of them. The file is append-only JSON lines: a killed build keeps
every evaluation it finished, and concurrent writers at worst duplicate a line.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from famc.space.arch import Arch


def result_key(arch: Arch, context: str) -> str:
    """Stable key of one architecture's result within an evaluation context."""
    payload = json.dumps(arch.to_dict(), sort_keys=True) + "|" + context
    return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _pack(correct: torch.Tensor) -> str:
    return base64.b64encode(np.packbits(correct.numpy().astype(np.uint8)).tobytes()).decode()


def _unpack(text: str, n: int) -> torch.Tensor:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8))[:n]
    return torch.from_numpy(bits.astype(bool))


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
        return _unpack(hit[1], hit[0])

    def put(self, key: str, correct: torch.Tensor) -> None:
        row = (correct.numel(), _pack(correct))
        self._mem[key] = row
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as f:
                f.write(json.dumps({"key": key, "n": row[0], "bits": row[1]}) + "\n")

    def __len__(self) -> int:
        return len(self._mem)
