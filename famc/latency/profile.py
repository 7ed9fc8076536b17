"""``famc profile``: measure a latency table for a space on this host, validate it, or re-fit it.

Every figure follows one definition (``famc.latency.measure``): the median of one inference call,
made the way a user calls the shipped artifact. Measuring is built to survive a noisy shared
machine and an interrupted run:

* layer graphs are timed in chunks; within a chunk every round calls every graph once, in a fresh
  random order, so a burst of load hits all graphs a little, and every call finds the caches as a
  layer inside a network does (holding other layers' weights, not its own);
* an entry is its median minus the median of an empty graph timed in the same chunk (the runtime's
  per-call cost, which a whole network pays once, not once per layer);
* the table is saved (atomically) after every chunk, and a re-run measures only missing entries;
* validation fits the correction (``famc.latency.fit``) on whole sub-networks and scores it on as
  many others, timed exactly as the build times a member.
"""

from __future__ import annotations

import datetime as dt
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import famc
from famc.errors import FamcError
from famc.latency.fit import fit_correction, score
from famc.latency.graphs import CallProbe, layer_module
from famc.latency.measure import MEMBER_PROTOCOL, Protocol, Timing, time_calls
from famc.latency.runtimes import Device, Graph, Runtime, check_runtime, device_info, measuring
from famc.latency.signatures import all_signatures
from famc.latency.table import Entry, LatencyTable, Metadata, Validation
from famc.progress import Reporter, Task
from famc.space import Arch, LayerSpec, SearchSpace, get_space
from famc.supernet import build_supernet

DEFAULT_WARMUP = 10  # untimed calls per graph: first runs allocate and fill caches
DEFAULT_REPEATS = 100  # timed single calls per layer graph
CHUNK = 32  # graphs timed together; the table is saved after each chunk
LAYER_BLOCK = 10  # back-to-back calls per layer graph per round (see _measure_layers)


@dataclass(frozen=True)
class ProfileReport:
    """What a profile run did: ``measured`` new signatures, ``kept`` from an existing table."""

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
                f"; fitted on {v.n_fit} sub-networks, on {v.n_holdout} others: MAPE {v.mape:.1%}, "
                f"within ±10% {v.within_10pct:.0%}, Spearman {v.spearman:.3f}, "
                f"worst {v.max_error_pct:.1f} %"
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
    fit: int | None = None,
    seed: int = 0,
    progress: bool = True,
) -> ProfileReport:
    """Fill ``out`` with an entry for every layer ``space`` can contain, then optionally validate.

    Existing entries in ``out`` are kept (it must have been measured with the same setting), so an
    interrupted run resumes where it stopped. ``validate`` > 0 fits the correction on ``fit``
    (default: as many) whole sub-networks and scores it on ``validate`` others.
    """
    started = time.perf_counter()
    space = get_space(space) if isinstance(space, str) else space
    rt = check_runtime(runtime)
    _check_counts(threads=threads, batch=batch, warmup=warmup, repeats=repeats, validate=validate,
                  fit=validate if fit is None else fit)  # fmt: skip
    out = Path(out)
    if out.exists() and not out.is_file():
        raise FamcError(f"--out {out} is not a file; give the path of a latency table (.yaml)")
    fresh = _metadata(space, rt, threads, batch, warmup, repeats)
    table = _resume(out, fresh) if out.exists() else LatencyTable(metadata=fresh)
    signatures = all_signatures(space)
    todo = [s for s in signatures if s not in table.entries]
    reporter = Reporter.auto(progress)
    with measuring(rt, threads, seed), reporter.task("layers", len(todo)) as task:
        _measure_layers(
            table,
            todo,
            signatures,
            rt,
            Protocol(warmup, max(1, repeats // LAYER_BLOCK), LAYER_BLOCK),
            seed,
            task,
            out,
        )
    if validate:
        validate_table(table, space, validate, validate if fit is None else fit, seed, reporter)
    if validate or not out.exists():
        table.save(out)
    kept = len(signatures) - len(todo)
    return ProfileReport(table, out, todo, kept, time.perf_counter() - started)


def refit(path: str | Path, validate: int, *, fit: int | None = None, out: str | Path | None = None,
          seed: int = 0, progress: bool = True, space: SearchSpace | None = None) -> ProfileReport:  # fmt: skip
    """Re-fit ``path``'s correction on this host: time whole sub-networks here, keep the layer
    entries, and write the table with its new hold-out figures to ``out`` (default: in place).
    ``space`` defaults to the table's preset (pass one for a space built in Python)."""
    started = time.perf_counter()
    path = Path(path)
    table = LatencyTable.load(path)
    _check_counts(validate=validate, fit=validate if fit is None else fit)
    if validate == 0:
        raise FamcError("--refit needs --validate N (N ≥ 2 whole sub-networks to score on)")
    space = space or get_space(table.metadata.space)
    validate_table(table, space, validate, validate if fit is None else fit, seed,
                   Reporter.auto(progress))  # fmt: skip
    target = Path(out) if out is not None else path
    table.save(target)
    return ProfileReport(table, target, [], len(table.entries), time.perf_counter() - started)


def _check_counts(**counts: int) -> None:
    least = {"threads": 1, "batch": 1, "warmup": 0, "repeats": 4, "validate": 0, "fit": 0}
    for name, value in counts.items():
        if value < least[name]:
            raise FamcError(f"--{name} must be at least {least[name]}, got {value}")
    if counts.get("validate", 0) and (counts["validate"] < 2 or counts.get("fit", 2) < 2):
        raise FamcError(
            f"--validate {counts['validate']} --fit {counts.get('fit')}: fitting and scoring "
            "each need at least 2 sub-networks (or --validate 0 for none)"
        )


def _measure_layers(table: LatencyTable, todo: list[str], signatures: dict[str, LayerSpec],
                    rt: Runtime, protocol: Protocol, seed: int, task: Task, out: Path) -> None:  # fmt: skip
    """Time ``todo`` in strided chunks (each mixes small and large layers), saving after each."""
    rng = random.Random(seed)
    probes: list[float] = []
    n_chunks = math.ceil(len(todo) / CHUNK)
    for c in range(n_chunks):
        chunk = todo[c::n_chunks]
        probes.append(_measure_chunk(table, chunk, signatures, rt, protocol, rng))
        table.metadata.call_overhead_ms = round(sorted(probes)[len(probes) // 2], 4)
        table.save(out)
        task.advance(len(chunk))


def _measure_chunk(table: LatencyTable, chunk: list[str], signatures: dict[str, LayerSpec],
                   rt: Runtime, protocol: Protocol, rng: random.Random) -> float:  # fmt: skip
    """Time the layers of ``chunk`` together (plus fillers) into ``table``; returns the median
    per-call cost of the chunk's empty graph in ms."""
    others = [s for s in signatures if s not in chunk]
    # A resumed run may have only a few layers left: time them among measured ones so their calls
    # still find the caches holding other layers' weights.
    fillers = rng.sample(others, min(len(others), max(0, CHUNK - len(chunk))))
    specs = [signatures[s] for s in chunk + fillers]
    batch, threads = table.metadata.batch, table.metadata.threads
    graphs = [Graph(CallProbe(), (batch, 1))] + [
        Graph(layer_module(spec), spec.input_shape(batch)) for spec in specs
    ]
    probe, *timings = time_calls([rt.session(g, threads) for g in graphs], protocol, rng)
    for sig, t in zip(chunk, timings, strict=False):
        table.entries[sig] = Entry(median_ms=round(max(t.median_ms - probe.median_ms, 0.0), 4),
                                   p90_ms=round(max(t.p90_ms - probe.median_ms, 0.0), 4), n=t.n)  # fmt: skip
    table.entries = dict(sorted(table.entries.items()))
    return probe.median_ms


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct uniformly random sub-networks, reproducible from ``seed``."""
    rng = random.Random(seed)
    seen: dict[Arch, None] = {}
    for _ in range(100 * n):
        seen.setdefault(space.sample(rng), None)
        if len(seen) == n:
            return list(seen)
    raise FamcError(f"space {space.name} has fewer than {n} distinct sub-networks")


def measure_archs(space: SearchSpace, archs: Sequence[Arch], runtime: Runtime, threads: int,
                  batch: int, seed: int = 0, task: Task | None = None,
                  protocol: Protocol = MEMBER_PROTOCOL) -> list[Timing]:  # fmt: skip
    """Latency of each whole sub-network (random weights), exported and called exactly as a
    shipped member is (``Graph`` → ``Runtime.session``), timed together by ``protocol``."""
    channels = space.preset.in_channels
    with measuring(runtime, threads, seed):
        supernet = build_supernet(space)
        calls = []
        for a in archs:
            graph = Graph(supernet.extract(a), (batch, channels, a.resolution, a.resolution))
            calls.append(runtime.session(graph, threads))
        return time_calls(calls, protocol, random.Random(seed),
                          None if task is None else task.advance)  # fmt: skip


def validate_table(table: LatencyTable, space: SearchSpace, n_holdout: int, n_fit: int, seed: int,
                   reporter: Reporter) -> None:  # fmt: skip
    """Fit ``table``'s correction on ``n_fit`` whole sub-networks, score it on ``n_holdout``
    others, and store both (the figures are the hold-out's only)."""
    m = table.metadata
    rt = check_runtime(m.runtime)
    archs = sample_archs(space, n_fit + n_holdout, seed)
    with reporter.task("whole sub-networks", len(archs) * MEMBER_PROTOCOL.rounds) as task:
        timings = measure_archs(space, archs, rt, m.threads, m.batch, seed, task)
    fit_and_validate(table, space, list(zip(archs, [t.median_ms for t in timings], strict=True)),
                     n_fit, seed, device_info(rt), rt.version())  # fmt: skip


def fit_and_validate(table: LatencyTable, space: SearchSpace, measured: Sequence[tuple[Arch, float]],
                     n_fit: int, seed: int, host: Device, runtime_version: str) -> None:  # fmt: skip
    """Fit ``table``'s correction on the first ``n_fit`` (arch, median ms) pairs, score it on the
    rest, and store both: famc's own validation and an imported kit's alike."""
    m = table.metadata
    terms = [table.terms(a, space) for a, _ in measured]
    ms = [t for _, t in measured]
    correction = fit_correction(terms[:n_fit], ms[:n_fit], m.call_overhead_ms)
    s = score([correction.apply(t) for t in terms[n_fit:]], ms[n_fit:])
    m.correction = correction
    m.validation = Validation(n_fit=n_fit, n_holdout=len(ms) - n_fit, **s.model_dump(), seed=seed,
                              host=host, runtime_version=runtime_version,
                              date=dt.datetime.now(dt.UTC).date())  # fmt: skip


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
    if not old.device.same_machine(fresh.device):
        raise FamcError(
            f"{out}: existing table was measured on {old.device.describe()}, this host is "
            f"{fresh.device.describe()}; pass another --out (or --refit it for this host)"
        )
    table.metadata = fresh.model_copy(
        update={
            "resolutions": sorted(set(old.resolutions) | set(fresh.resolutions)),
            "call_overhead_ms": old.call_overhead_ms,
            "correction": old.correction,
            "validation": old.validation,
        }
    )
    return table
