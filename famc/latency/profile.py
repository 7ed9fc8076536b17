"""``famc profile``: measure a latency table for a space on this host, and validate it.

Measuring is built to survive a noisy shared machine and an interrupted run:

* graphs are timed in chunks; within a chunk every round calls every graph once, in a fresh
  random order, so a burst of load from another process hits all graphs a little instead of one a
  lot, and every call finds the caches as a layer inside a network does: holding other layers'
  weights, not its own (timing one graph back to back makes isolated layers look ~30 % faster
  than the networks they form);
* an entry is the mean of its fastest samples (``famc.latency.stats``: load only adds time),
  minus the runtime's per-call cost timed in the same chunk;
* the table is saved (atomically) after every chunk, and a re-run measures only missing entries.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

import famc
from famc.errors import FamcError
from famc.latency.graphs import CallProbe, layer_module
from famc.latency.runtimes import (
    Runtime,
    Timer,
    check_runtime,
    device_info,
    make_timer,
    measuring,
)
from famc.latency.signatures import all_signatures
from famc.latency.stats import Robust, accuracy, robust
from famc.latency.table import Entry, LatencyTable, Metadata, Validation
from famc.space import Arch, LayerSpec, SearchSpace, get_space
from famc.supernet import build_supernet

DEFAULT_WARMUP = 10  # untimed calls per graph: first runs allocate and fill caches
DEFAULT_REPEATS = 100  # timed single calls per graph
CHUNK = 32  # graphs timed together; the table is saved after each chunk

Advance = Callable[[float], None]


@dataclass(frozen=True)
class ProfileReport:
    """What ``run_profile`` did: ``measured`` new signatures, ``kept`` from an existing table."""

    table: LatencyTable
    path: Path
    measured: list[str]
    kept: int
    elapsed_s: float

    def summary(self) -> str:
        """One line for the CLI: what was measured, where it went, how accurate it is."""
        line = (
            f"measured {len(self.measured)} layer(s), kept {self.kept}, in "
            f"{self.elapsed_s:.0f} s -> {self.path}"
        )
        v = self.table.metadata.validation
        if v is not None:
            line += (
                f"; on {v.n} sub-networks: MAPE {v.mape:.1%}, within ±10% {v.within_10pct:.0%}, "
                f"Spearman {v.spearman:.3f}, overhead {v.overhead_ms:+.4f} ms"
            )
        return line


def run_profile(
    space: str | SearchSpace,
    runtime: str,
    threads: int,
    out: str | Path,
    *,
    batch: int = 1,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    validate: int = 0,
    seed: int = 0,
    progress: bool = True,
) -> ProfileReport:
    """Fill ``out`` with an entry for every layer ``space`` can contain, then optionally validate.

    Existing entries in ``out`` are kept (it must have been measured with the same setting), so an
    interrupted run resumes where it stopped. ``validate`` > 0 times that many random whole
    sub-networks, fits ``overhead_ms`` and stores MAPE / within-10 % / Spearman in the metadata.
    """
    started = time.perf_counter()
    space = get_space(space) if isinstance(space, str) else space
    rt = check_runtime(runtime)
    _check_counts(threads=threads, batch=batch, warmup=warmup, repeats=repeats, validate=validate)
    out = Path(out)
    if out.exists() and not out.is_file():
        raise FamcError(f"--out {out} is not a file; give the path of a latency table (.yaml)")
    fresh = _metadata(space, rt, threads, batch, warmup, repeats)
    table = _resume(out, fresh) if out.exists() else LatencyTable(metadata=fresh)
    signatures = all_signatures(space)
    todo = [s for s in signatures if s not in table.entries]
    kept = len(signatures) - len(todo)
    rng = random.Random(seed)
    with measuring(rt, threads, seed), _progress(progress) as bar:
        task = bar.add_task("layers", total=len(todo) + validate)

        def advance(x: float) -> None:
            bar.advance(task, x)

        probes: list[float] = []
        n_chunks = math.ceil(len(todo) / CHUNK)
        for c in range(n_chunks):
            bar.update(task, description=f"layers, chunk {c + 1}/{n_chunks}")
            chunk = todo[c::n_chunks]  # strided: every chunk mixes small and large layers
            probes.append(_measure_chunk(table, chunk, signatures, rt, threads, batch,
                                         (warmup, repeats), rng, advance))  # fmt: skip
            table.metadata.call_overhead_ms = _ms(sorted(probes)[len(probes) // 2])
            table.save(out)
        if validate:
            bar.update(task, description=f"validating on {validate} sub-networks")
            archs = sample_archs(space, validate, seed)
            measured = measure_archs(
                space, archs, rt, threads, batch, warmup, repeats, seed, advance
            )
            table.metadata.validation = fit_validation(table, space, archs, measured, seed)
        if validate or not out.exists():
            table.save(out)
    return ProfileReport(table, out, todo, kept, time.perf_counter() - started)


def _check_counts(**counts: int) -> None:
    least = {"threads": 1, "batch": 1, "warmup": 0, "repeats": 4, "validate": 0}
    for name, value in counts.items():
        if value < least[name]:
            raise FamcError(f"--{name} must be at least {least[name]}, got {value}")
    if counts["validate"] == 1:
        raise FamcError("--validate needs 0 (off) or at least 2 sub-networks, got 1")


def _measure_chunk(table: LatencyTable, chunk: list[str], signatures: dict[str, LayerSpec],
                   rt: Runtime, threads: int, batch: int, rounds: tuple[int, int],
                   rng: random.Random, advance: Advance) -> float:  # fmt: skip
    """Time the layers of ``chunk`` together (plus fillers) into ``table``; returns the chunk's
    per-call cost."""
    others = [s for s in signatures if s not in chunk]
    # A resumed run may have only a few layers left: time them among measured ones so their calls
    # still find the caches holding other layers' weights.
    fillers = rng.sample(others, min(len(others), max(0, CHUNK - len(chunk))))
    specs = [signatures[s] for s in chunk + fillers]
    timers = [make_timer(rt, CallProbe(), (batch, 1), threads)] + [
        make_timer(rt, layer_module(spec), spec.input_shape(batch), threads) for spec in specs
    ]
    probe, *stats = _measure(timers, *rounds, rng, advance, len(chunk))
    for sig, st in zip(chunk, stats, strict=False):
        table.entries[sig] = Entry(
            mean_ms=_ms(max(st.mean - probe.mean, 0.0)), std_ms=_ms(st.std), n=st.n
        )
    table.entries = dict(sorted(table.entries.items()))
    return probe.mean


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct uniformly random sub-networks, reproducible from ``seed``."""
    rng = random.Random(seed)
    seen: dict[Arch, None] = {}
    for _ in range(100 * n):
        seen.setdefault(space.sample(rng), None)
        if len(seen) == n:
            return list(seen)
    raise FamcError(f"space {space.name} has fewer than {n} distinct sub-networks")


def measure_archs(
    space: SearchSpace,
    archs: Sequence[Arch],
    runtime: Runtime,
    threads: int,
    batch: int,
    warmup: int = DEFAULT_WARMUP,
    repeats: int = DEFAULT_REPEATS,
    seed: int = 0,
    advance: Advance | None = None,
) -> list[float]:
    """Steady-state latency in ms of each whole sub-network (random weights), interleaved."""
    channels = space.preset.in_channels
    with measuring(runtime, threads, seed):
        supernet = build_supernet(space)
        timers = [
            make_timer(runtime, supernet.extract(a),
                       (batch, channels, a.resolution, a.resolution), threads)
            for a in archs
        ]  # fmt: skip
        stats = _measure(
            timers, warmup, repeats, random.Random(seed), advance, len(archs), warm=True
        )
    return [st.mean * 1e3 for st in stats]


def fit_validation(
    table: LatencyTable,
    space: SearchSpace,
    archs: Sequence[Arch],
    measured: Sequence[float],
    seed: int,
) -> Validation:
    """Fit ``overhead_ms`` = mean(measured − Σ entries), then score the corrected predictions."""
    sums = [table.layer_sum(a, space) for a in archs]
    overhead = sum(m - s for m, s in zip(measured, sums, strict=True)) / len(sums)
    acc = accuracy([s + overhead for s in sums], measured)
    return Validation(
        overhead_ms=round(overhead, 4),
        mape=round(acc.mape, 4),
        within_10pct=round(acc.within_10pct, 4),
        spearman=round(acc.spearman, 4),
        n=len(archs),
        seed=seed,
    )


def _measure(
    timers: Sequence[Timer],
    warmup: int,
    repeats: int,
    rng: random.Random,
    advance: Advance | None,
    units: float,
    warm: bool = False,
) -> list[Robust]:
    """Robust per-call seconds of every timer, one timed call per timer per shuffled round.

    ``warm`` precedes each timed call with an untimed one of the same graph: a whole network
    serving requests runs after itself, so its weights are as cached as in a loop of inferences.
    """
    if warmup:
        for timer in timers:
            timer(warmup)
    samples: list[list[float]] = [[] for _ in timers]
    order = list(range(len(timers)))
    for _ in range(repeats):
        rng.shuffle(order)
        for i in order:
            if warm:
                timers[i](1)
            samples[i].append(timers[i](1))
        if advance is not None:
            advance(units / repeats)
    return [robust(s) for s in samples]


def _metadata(
    space: SearchSpace, rt: Runtime, threads: int, batch: int, warmup: int, repeats: int
) -> Metadata:
    return Metadata(
        space=space.name,
        resolutions=list(space.preset.resolutions),
        runtime=rt.name,
        runtime_version=rt.version(),
        threads=threads,
        batch=batch,
        precision="fp32",
        device=device_info(rt),
        famc_version=famc.__version__,
        date=dt.datetime.now(dt.UTC).date(),
        warmup=warmup,
        repeats=repeats,
        call_overhead_ms=0.0,
    )


def _resume(out: Path, fresh: Metadata) -> LatencyTable:
    """The table at ``out`` if it was measured in the same setting, with refreshed metadata."""
    table = LatencyTable.load(out)
    old = table.metadata
    for field in ("space", "runtime", "runtime_version", "threads", "batch", "precision"):
        if getattr(old, field) != getattr(fresh, field):
            raise FamcError(
                f"{out}: existing table has {field}={getattr(old, field)!r}, this run "
                f"{getattr(fresh, field)!r}; pass another --out or delete the file to re-measure"
            )
    if (old.device.cpu, old.device.gpu) != (fresh.device.cpu, fresh.device.gpu):
        raise FamcError(
            f"{out}: existing table was measured on {old.device.cpu} / {old.device.gpu}, this "
            f"host is {fresh.device.cpu} / {fresh.device.gpu}; pass another --out"
        )
    table.metadata = fresh.model_copy(
        update={
            "resolutions": sorted(set(old.resolutions) | set(fresh.resolutions)),
            "call_overhead_ms": old.call_overhead_ms,
            "validation": old.validation,
        }
    )
    return table


def _ms(seconds: float) -> float:
    """Seconds as milliseconds rounded to 0.1 µs: finer digits are noise and clutter diffs."""
    return round(seconds * 1e3, 4)


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        disable=not enabled,
    )
