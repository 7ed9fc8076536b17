"""Candidate evaluation on a Ray cluster: ``--workers N`` actors, each loading the supernet and the
data once and evaluating batches of architectures.

``famc build --workers N`` starts a local cluster of N worker processes; ``--ray-address ADDR`` joins
a running one (``ray start --head`` on one node, ``ray start --address`` on the others; the supernet,
the data and famc must be at the same paths on every node). Each actor re-derives the split from the
config and refuses to work when its data fingerprint differs from the driver's, so a node with other
files cannot corrupt the cache. Actors return packed vectors; the driver assembles them in input
order and alone writes the cache. A batch whose worker dies is re-run on a replacement worker.
"""

from __future__ import annotations

import logging
import math
import os
import socket
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import famc
from famc.data import DataConfig
from famc.device import resolve_device
from famc.errors import FamcError
from famc.evaluate.backends import Job, Log
from famc.evaluate.engine import Evaluator
from famc.io import first_line
from famc.metrics import pack_correct, unpack_correct
from famc.prepare import Prepared, first_images
from famc.search.race import Race
from famc.space import Arch, get_space
from famc.supernet import build_supernet, load_checkpoint
from famc.supernet.bn import BNConvention

#: Times one batch may lose its worker before the build gives up.
MAX_RETRIES = 3
#: Batches per worker and call: small enough to balance raced candidates' uneven costs.
BATCHES_PER_WORKER = 4


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker loads (picklable): the supernet, the data split and evaluation settings."""

    space: str
    supernet: str
    data: DataConfig
    search_images: int | None
    calib_images: int | None
    batch_size: int
    bn_convention: BNConvention
    fingerprint: str  # the driver's data fingerprint
    device: str  # evaluation.device, resolved on the worker's own host
    amp: bool


def worker_spec(p: Prepared) -> WorkerSpec:
    ev = p.cfg.evaluation
    return WorkerSpec(p.space.name, p.cfg.supernet, p.cfg.data, ev.search_images, ev.calib_images,
                      ev.batch_size, ev.bn_convention,  # type: ignore[arg-type]
                      p.inputs.data_fingerprint, ev.device, ev.amp)  # fmt: skip


class EvalWorker:
    """A Ray actor: the supernet and data loaded once, then batches of architectures."""

    def __init__(self, spec: WorkerSpec, threads: int) -> None:
        torch.set_num_threads(threads)
        data = spec.data.load()
        if data.fingerprint() != spec.fingerprint:
            raise FamcError(f"worker on {socket.gethostname()}: the data at {data.origin} differ "
                            "from the driver's (fingerprint); give every node the same files")  # fmt: skip
        net = build_supernet(get_space(spec.space))
        load_checkpoint(net, spec.supernet)
        calib = first_images(data.calib, spec.calib_images)
        device = resolve_device(spec.device, f"evaluation.device on {socket.gethostname()}",
                                "give every worker a GPU or use `auto`")  # fmt: skip
        self.evaluator = Evaluator(net.eval(), calib, data.mean, data.std,
                                   batch_size=spec.batch_size, bn_convention=spec.bn_convention,
                                   device=device, amp=spec.amp)  # fmt: skip
        self.splits = {"search": first_images(data.search, spec.search_images), "test": data.test}

    def ready(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def run(self, archs: list[Arch], split: str, race: Race | None,
            done: list[torch.Tensor | None]) -> list[tuple[int, str]]:  # fmt: skip
        images = self.splits[split]
        vectors = self.evaluator.correct_many(archs, images, race, done)
        return [(v.numel(), pack_correct(v)) for v in vectors]


def _ray() -> Any:
    import ray

    return ray


def _connect(workers: int, address: str | None) -> tuple[int, float]:
    """Start a local cluster (or join ``address``); returns (threads, GPUs) per worker."""
    ray = _ray()
    if not ray.is_initialized():
        if address is None:
            threads = max(1, (os.cpu_count() or 1) // workers)
            # workers import the famc this driver runs, not whatever the environment points at
            path = os.pathsep.join(filter(None, [str(Path(famc.__file__).parents[1]),
                                                 os.environ.get("PYTHONPATH")]))  # fmt: skip
            ray.init(num_cpus=threads * workers, include_dashboard=False,
                     logging_level=logging.WARNING, runtime_env={"env_vars": {"PYTHONPATH": path}})  # fmt: skip
        else:
            ray.init(address=address, logging_level=logging.WARNING)
    total = ray.cluster_resources()
    threads = max(1, int(total.get("CPU", workers)) // workers)
    return threads, 1.0 if total.get("GPU", 0) >= workers else 0.0


class RayBackend:
    """N actors fed batches of architectures; a batch whose actor dies goes to a replacement."""

    def __init__(self, spec: WorkerSpec, workers: int, address: str | None, log: Log) -> None:
        ray = _ray()
        self.owns = not ray.is_initialized() and address is None
        threads, gpus = _connect(workers, address)
        self.actor = ray.remote(EvalWorker).options(num_cpus=threads, num_gpus=gpus, max_restarts=0)
        self.spec, self.threads, self.log = spec, threads, log
        self.actors = [self._start() for _ in range(workers)]
        try:
            hosts = ray.get([a.ready.remote() for a in self.actors])
        except ray.exceptions.RayActorError as exc:
            self.close()
            raise FamcError(f"an evaluation worker failed to start: {first_line(exc)}") from None
        log(f"evaluating on {workers} Ray worker(s) ({threads} thread(s) each"
            f"{', 1 GPU each' if gpus else ''}): {', '.join(hosts)}")  # fmt: skip

    def _start(self) -> Any:
        return self.actor.remote(self.spec, self.threads)

    def run(self, jobs: Sequence[Job], split: str, race: Race | None) -> list[torch.Tensor]:
        ray = _ray()
        size = max(1, math.ceil(len(jobs) / (BATCHES_PER_WORKER * len(self.actors))))
        queue = deque(range(0, len(jobs), size))
        idle = deque(range(len(self.actors)))
        running: dict[Any, tuple[int, int]] = {}  # object ref -> (worker slot, first job)
        tries: dict[int, int] = {}
        done: dict[int, list[torch.Tensor]] = {}
        while queue or running:
            while queue and idle:
                slot, start = idle.popleft(), queue.popleft()
                batch = jobs[start : start + size]
                ref = self.actors[slot].run.remote([j.arch for j in batch], split, race,
                                                   [j.done for j in batch])  # fmt: skip
                running[ref] = (slot, start)
            [ref], _ = ray.wait(list(running), num_returns=1)
            slot, start = running.pop(ref)
            idle.append(slot)
            try:
                packed = ray.get(ref)
            except ray.exceptions.RayActorError as exc:
                self._replace(slot, start, min(size, len(jobs) - start), tries, exc)
                queue.appendleft(start)
                continue
            except ray.exceptions.RayTaskError as exc:
                if isinstance(exc.cause, FamcError):
                    raise exc.cause from None
                raise
            done[start] = [unpack_correct(bits, n) for n, bits in packed]
        return [v for start in sorted(done) for v in done[start]]

    def _replace(self, slot: int, start: int, count: int, tries: dict[int, int],
                 exc: Exception) -> None:  # fmt: skip
        """Swap in a fresh worker for a dead one, or give up after ``MAX_RETRIES`` deaths."""
        tries[start] = tries.get(start, 0) + 1
        if tries[start] > MAX_RETRIES:
            raise FamcError(f"evaluation workers died {MAX_RETRIES + 1} times on the same "
                            f"{count} architecture(s) ({first_line(exc)}); see the Ray logs")  # fmt: skip
        self.log(f"evaluation worker {slot} died ({first_line(exc)}); re-running its {count} "
                 "architecture(s) on a replacement worker")  # fmt: skip
        self.actors[slot] = self._start()

    def close(self) -> None:
        ray = _ray()
        for actor in self.actors:
            ray.kill(actor)
        self.actors = []
        if self.owns:
            ray.shutdown()
