"""Where the evaluations a cache lacks run: in this process (``inline``) or on Ray workers (``ray``).

:class:`~famc.evaluate.cache.CachedEvaluation` hands a backend a generation's uncached architectures
in one call, with the race they run under; the backend returns their correctness vectors in the same
order. Evaluation is deterministic per (architecture, data), so where it ran changes no result.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch

from famc.data import Images
from famc.errors import FamcError
from famc.evaluate.engine import Evaluator
from famc.prepare import Prepared
from famc.search.race import Race
from famc.space import Arch

Log = Callable[[str], None]
RAY_HINT = "pip install 'famc[ray]'"


@dataclass(frozen=True)
class Job:
    """One architecture to evaluate, with the prefix of its vector the cache already holds (a
    candidate an earlier race stopped), so only the rest is computed."""

    arch: Arch
    done: torch.Tensor | None = None


@dataclass(frozen=True)
class BackendSettings:
    """``--workers`` / ``evaluation.workers`` and ``--ray-address``."""

    workers: int = 1
    address: str | None = None

    @property
    def name(self) -> str:
        return "ray" if self.workers > 1 or self.address is not None else "inline"

    def check(self) -> None:
        """Fail before the build's slow stages when the chosen backend cannot run here."""
        if self.name == "ray":
            try:
                import ray  # noqa: F401
            except ImportError:
                what = (
                    f"--ray-address {self.address}" if self.address else f"--workers {self.workers}"
                )
                raise FamcError(f"{what} evaluates on a Ray cluster, but Ray is not installed: "
                                f"{RAY_HINT} (or build with --workers 1)") from None  # fmt: skip


class Backend(Protocol):
    def run(self, jobs: Sequence[Job], split: str, race: Race | None) -> list[torch.Tensor]:
        """The vectors of ``jobs`` on ``split`` (prefixes where ``race`` stopped them), in order."""
        ...

    def close(self) -> None: ...


class InlineBackend:
    """In this process, a generation's architectures as one prefix tree (famc.evaluate.tree)."""

    def __init__(self, evaluator: Evaluator, splits: Mapping[str, Images]) -> None:
        self.evaluator, self.splits = evaluator, splits

    def run(self, jobs: Sequence[Job], split: str, race: Race | None) -> list[torch.Tensor]:
        images = self.splits[split]
        return self.evaluator.correct_many(
            [j.arch for j in jobs], images, race, [j.done for j in jobs]
        )

    def close(self) -> None:
        pass


def _inline(p: Prepared, ev: Evaluator, splits: Mapping[str, Images], settings: BackendSettings,
            log: Log) -> Backend:  # fmt: skip
    return InlineBackend(ev, splits)


def _ray(p: Prepared, ev: Evaluator, splits: Mapping[str, Images], settings: BackendSettings,
         log: Log) -> Backend:  # fmt: skip
    settings.check()
    from famc.evaluate.distributed import RayBackend, worker_spec

    return RayBackend(worker_spec(p), settings.workers, settings.address, log)


#: Backend name → constructor ``(prepared, evaluator, splits, settings, log)``.
BACKENDS: dict[str, Callable[[Prepared, Evaluator, Mapping[str, Images], BackendSettings, Log],
                             Backend]] = {"inline": _inline, "ray": _ray}  # fmt: skip


def make_backend(p: Prepared, ev: Evaluator, splits: Mapping[str, Images],
                 settings: BackendSettings, log: Log) -> Backend:  # fmt: skip
    return BACKENDS[settings.name](p, ev, splits, settings, log)
