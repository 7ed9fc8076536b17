"""``famc profile import``: a latency table from a kit's timings, taken on the device by its own tool.

``IMPORTERS`` maps each tool to how its output is read into one ``Timing`` per graph id of the kit
(``famc.latency.kit``), from ``results/<tool>/`` of the kit:

* ``onnxruntime_perf_test``: ``<id>.txt``, the result file the tool writes when given one after the
  model path: one line per timed call, ``model_name,seconds,peak_working_set_bytes,cpu_percent,run``
  (``PerformanceResult::DumpToFile``, onnxruntime ``test/perftest/performance_runner.cc``, the same
  since 1.x), so median and p90 are computed here. A file holding only the tool's printed summary
  is accepted too: ``P50 Latency: X s`` / ``P90 Latency: X s`` (``... is Xsec`` in older versions;
  printed with ``-s``) give median and p90; ``Average inference time cost: X ms`` alone is an
  aggregate, and then the mean stands for both.
* ``trtexec``: ``<id>.json`` from ``--exportTimes``, a list of per-inference records (TensorRT
  ``samples/common/sampleReporting.cpp``, ``exportJSONTrace``); their ``latencyMs`` (H2D + compute +
  D2H; the kit's runner passes ``--noDataTransfers``, so it is compute alone, as famc's ``tensorrt``
  runtime times an engine whose I/O lives on the GPU).
* ``csv``: ``latency.csv`` written by hand for anything else (figures read off Xcode's CoreML
  performance report, say): a ``graph`` (or ``signature``) column holding graph ids or layer
  signatures, ``median_ms``, optionally ``p90_ms`` (else the median stands for it).

The table is then built as ``famc profile`` builds one: each entry is its layer graph's median minus
the probe's (clamped at 0), and when the kit holds whole networks the correction is fitted on its
fit networks and scored on its hold-out ones (``fit_correction``, ``score``), so an imported table
carries honest hold-out figures.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

import famc
from famc.errors import FamcError, format_validation_error
from famc.io import read_text
from famc.latency.kit import PROBE, TEMPLATE, Manifest
from famc.latency.measure import Timing, summarise
from famc.latency.profile import fit_and_validate
from famc.latency.runtimes import RUNTIMES, Device
from famc.latency.signatures import all_signatures
from famc.latency.table import Entry, LatencyTable, Metadata
from famc.space import SearchSpace, get_space

Reader = Callable[[Path, Manifest], dict[str, Timing]]  # results/<tool>/ -> timing per graph id
HOST_FILE = "host.txt"  # written by the kit's runner: the device, one key=value a line
CSV_FILE = "latency.csv"
SHOWN = 3  # graph ids named in an error line
UNKNOWN = "unknown"  # what the device did not say

_NUM = r"([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)"
_RUN = re.compile(rf"^[^,\r\n]*,{_NUM}(?:,-?\d+)+\s*$", re.M)  # name,seconds,bytes,cpu%,run
_PCT = {q: re.compile(rf"^P{q} Latency(?: is|:)\s*{_NUM}\s*s", re.M) for q in (50, 90)}
_AVG = re.compile(rf"^Average inference time cost:\s*{_NUM}\s*ms", re.M)
_REQUESTS = re.compile(r"^Total (?:inference requests|iterations):\s*(\d+)", re.M)


def parse_perf_test(text: str) -> Timing:
    """One graph's ``onnxruntime_perf_test`` output (see the module doc for what is accepted)."""
    runs = [float(s) for s in _RUN.findall(text)]
    if runs:
        return summarise(runs)
    found = _REQUESTS.search(text)
    n = int(found[1]) if found else 1
    p50, p90 = (_number(_PCT[q], text) for q in (50, 90))
    if p50 is not None:
        return Timing(p50 * 1e3, (p50 if p90 is None else p90) * 1e3, n)
    mean = _number(_AVG, text)
    if mean is not None:
        return Timing(mean, mean, n)
    raise ValueError("no per-run lines, no 'P50 Latency' and no 'Average inference time cost'")


def _number(pattern: re.Pattern[str], text: str) -> float | None:
    found = pattern.search(text)
    return float(found[1]) if found else None


def parse_trtexec(text: str) -> Timing:
    """One graph's ``trtexec --exportTimes`` JSON: per-inference ``latencyMs``."""
    records = json.loads(text)  # a JSONDecodeError is a ValueError
    if not isinstance(records, list) or not records:
        raise ValueError("expected a non-empty JSON list of per-inference records")
    latencies = [r.get("latencyMs") if isinstance(r, dict) else None for r in records]
    if not all(_ms(v) for v in latencies):
        raise ValueError("every record needs a non-negative number 'latencyMs'")
    return summarise([float(v) / 1e3 for v in latencies])  # type: ignore[arg-type]


def _ms(value: object) -> bool:
    return (isinstance(value, int | float) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)  # fmt: skip


def _per_graph(tool: str, suffix: str, parse: Callable[[str], Timing]) -> Reader:
    """A reader for a tool that leaves one output file per graph, ``<id><suffix>``."""

    def read(results: Path, manifest: Manifest) -> dict[str, Timing]:
        timings = {}
        for g in manifest.graphs:
            path = results / f"{g}{suffix}"
            if not path.is_file():
                raise FamcError(f"{path}: missing; run `./run.sh {tool}` in the kit on the device "
                                "and copy its results/ folder back into the kit")  # fmt: skip
            try:
                timings[g] = parse(read_text(path, f"{tool} output"))
            except ValueError as exc:
                raise FamcError(f"{path}: not {tool} output ({exc}); time graph {g} again with "
                                f"`./run.sh {tool}`") from None  # fmt: skip
        return timings

    return read


def parse_csv(text: str, manifest: Manifest) -> dict[str, Timing]:
    """``graph`` (or ``signature``), ``median_ms`` and optionally ``p90_ms`` per row; a row names
    a graph by its id or, for a layer graph, by its signature."""
    reader = csv.reader(io.StringIO(text))
    header = [c.strip() for c in next(reader, [])]
    key = next((k for k in ("graph", "signature") if k in header), None)
    if key is None or "median_ms" not in header or not set(header) <= {key, "median_ms", "p90_ms"}:
        raise ValueError(f"header {','.join(header)!r}: expected graph,median_ms[,p90_ms]")
    ids = {g: g for g in manifest.graphs}
    ids |= {v.signature: g for g, v in manifest.graphs.items() if v.signature is not None}
    timings: dict[str, Timing] = {}
    for row in reader:
        where = f"line {reader.line_num}"
        if not any(c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} fields, the header has {len(header)}")
        rec = {h: c.strip() for h, c in zip(header, row, strict=True)}
        g = ids.get(rec[key])
        if g is None or g in timings:
            what = (
                "is neither a graph id nor a layer signature of the kit" if g is None else "repeats"
            )
            raise ValueError(f"{where}: {rec[key]!r} {what}")
        median = _field(rec, "median_ms", where)
        p90 = _field(rec, "p90_ms", where) if rec.get("p90_ms") else median
        if p90 < median:
            raise ValueError(f"{where}: p90_ms {p90} is below median_ms {median}")
        timings[g] = Timing(median, p90, 1)
    return timings


def _field(rec: dict[str, str], name: str, where: str) -> float:
    try:
        value = float(rec[name])
    except ValueError:
        raise ValueError(f"{where}: {name} {rec[name]!r} is not a number of ms") from None
    if not _ms(value):
        raise ValueError(f"{where}: {name} {rec[name]!r} is not a non-negative number of ms")
    return value


def _read_csv(results: Path, manifest: Manifest) -> dict[str, Timing]:
    path = results / CSV_FILE
    if not path.is_file():
        raise FamcError(f"{path}: missing; fill in a copy of the kit's {TEMPLATE} (one row per "
                        "graph id: graph,median_ms[,p90_ms]) and save it there")  # fmt: skip
    try:
        timings = parse_csv(read_text(path, "latency CSV"), manifest)
    except ValueError as exc:
        raise FamcError(f"{path}: {exc}; fix the file") from None
    missing = [g for g in manifest.graphs if g not in timings]
    if missing:
        shown = ", ".join(missing[:SHOWN]) + (f" (+{len(missing) - SHOWN} more)"
                                              if len(missing) > SHOWN else "")  # fmt: skip
        raise FamcError(f"{path}: no row for {len(missing)} graph(s) of the kit: {shown}; add "
                        f"them (every graph id is in {TEMPLATE})")  # fmt: skip
    return timings


@dataclass(frozen=True)
class Importer:
    """How one tool's output becomes timings, and what its figures stand for by default."""

    runtime: str | None  # the famc runtime its figures are (None: the user names it, --runtime)
    formats: tuple[str, ...]  # kit formats the tool runs
    warmup: int  # untimed calls before timing, as the kit's runner drives the tool
    read: Reader


IMPORTERS: dict[str, Importer] = {
    "onnxruntime_perf_test": Importer(
        "ort-cpu", ("onnx",), 1, _per_graph("onnxruntime_perf_test", ".txt", parse_perf_test)
    ),
    # trtexec warms up for --warmUp=200 ms rather than a count of calls
    "trtexec": Importer("tensorrt", ("onnx",), 0, _per_graph("trtexec", ".json", parse_trtexec)),
    "csv": Importer(None, ("onnx", "coreml"), 0, _read_csv),
}


class HostInfo(BaseModel):
    """``results/<tool>/host.txt`` as the kit's runner writes it (empty: the device did not say)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    tool: str = ""
    threads: str = ""
    cpu: str = ""
    cores: str = ""
    platform: str = ""
    governor: str = ""
    gpu: str = ""

    @classmethod
    def load(cls, path: Path) -> HostInfo | None:
        """The file at ``path``, or None where the runner wrote none (a hand-written CSV)."""
        if not path.is_file():
            return None
        lines = [ln for ln in read_text(path, "host file").splitlines() if ln.strip()]
        if not all("=" in ln for ln in lines):
            raise FamcError(f"{path}: expected key=value lines; run the kit's run.sh again")
        try:
            return cls.model_validate(dict(ln.split("=", 1) for ln in lines))
        except ValidationError as exc:
            raise FamcError(format_validation_error(path, exc, "invalid host file")) from None

    def count(self, name: str) -> int | None:
        value = getattr(self, name)
        return int(value) if value.isdigit() and int(value) > 0 else None


@dataclass(frozen=True)
class ImportReport:
    """What an import did: the table it wrote, where, from which tool's output."""

    table: LatencyTable
    path: Path
    tool: str

    @property
    def device_known(self) -> bool:
        return self.table.metadata.device.cpu != UNKNOWN

    def summary(self) -> str:
        m = self.table.metadata
        line = (
            f"imported {len(self.table.entries)} layer(s) timed by {self.tool} ({m.runtime}, "
            f"per-call cost {m.call_overhead_ms:.4f} ms) -> {self.path}"
        )
        v = m.validation
        if v is not None:
            line += (
                f"; fitted on {v.n_fit} sub-networks, on {v.n_holdout} others: MAPE {v.mape:.1%}, "
                f"within ±10% {v.within_10pct:.0%}, Spearman {v.spearman:.3f}, "
                f"worst {v.max_error_pct:.1f} %"
            )
        if not self.device_known:
            line += "; device unknown: pass --device and --cores to record it"
        return line


def import_kit(space: str | SearchSpace, kit: str | Path, tool: str, out: str | Path, *,
               runtime: str | None = None, runtime_version: str = UNKNOWN,
               device: str | None = None, cores: int | None = None,
               force: bool = False) -> ImportReport:  # fmt: skip
    """Build the latency table of ``kit``'s graphs from ``tool``'s output files under
    ``kit/results/<tool>/`` and save it to ``out`` (see the module doc)."""
    space = get_space(space) if isinstance(space, str) else space
    kit, out = Path(kit), Path(out)
    if tool not in IMPORTERS:
        raise FamcError(f"--tool {tool!r}: choose one of {', '.join(IMPORTERS)}")
    rt = runtime or IMPORTERS[tool].runtime
    if rt is None or rt not in RUNTIMES:
        given = "--tool csv needs --runtime" if rt is None else f"unknown --runtime {rt!r}"
        raise FamcError(f"{given}: name the runtime the figures were taken on, one of "
                        f"{', '.join(RUNTIMES)}")  # fmt: skip
    if cores is not None and cores < 1:
        raise FamcError(f"--cores must be at least 1, got {cores}")
    if out.exists() and (out.is_dir() or not force):
        raise FamcError(f"--out {out} already exists: pass --force to replace it, or another --out")
    manifest = _check_kit(Manifest.load(kit), kit, space, tool)
    results = kit / "results" / tool
    timings = IMPORTERS[tool].read(results, manifest)
    host = HostInfo.load(results / HOST_FILE) or HostInfo()
    metadata = Metadata(
        space=space.name, resolutions=manifest.resolutions, runtime=rt,
        runtime_version=runtime_version, threads=host.count("threads") or manifest.threads,
        batch=manifest.batch, precision="fp32", device=_device(host, device, cores),
        famc_version=famc.__version__, date=dt.datetime.now(dt.UTC).date(),
        warmup=IMPORTERS[tool].warmup, repeats=min(timings[g].n for g in manifest.ids("layer")),
        call_overhead_ms=round(timings[PROBE].median_ms, 4),
    )  # fmt: skip
    table = LatencyTable(metadata=metadata, entries=_entries(manifest, timings))
    if manifest.ids("fit", "holdout"):
        fit, held = manifest.ids("fit"), manifest.ids("holdout")
        measured = [(space.arch_from_dict(manifest.graphs[g].arch or {}), timings[g].median_ms)
                    for g in fit + held]  # fmt: skip
        m = table.metadata
        fit_and_validate(table, space, measured, len(fit), manifest.seed, m.device,
                         m.runtime_version)  # fmt: skip
    table.save(out)
    return ImportReport(table, out, tool)


def _entries(manifest: Manifest, timings: dict[str, Timing]) -> dict[str, Entry]:
    """Each layer graph's median and p90 net of the probe's median (clamped at 0), as
    ``famc profile`` subtracts the per-call cost a whole network pays only once."""
    probe = timings[PROBE].median_ms
    entries = {}
    for g in manifest.ids("layer"):
        t = timings[g]
        entries[manifest.graphs[g].signature or ""] = Entry(
            median_ms=round(max(t.median_ms - probe, 0.0), 4),
            p90_ms=round(max(t.p90_ms - probe, 0.0), 4),
            n=t.n,
        )
    return dict(sorted(entries.items()))


def _check_kit(manifest: Manifest, kit: Path, space: SearchSpace, tool: str) -> Manifest:
    """The kit must have been exported for this space, as it is now, in a format ``tool`` runs."""
    where = kit / "manifest.json"
    if manifest.space != space.name:
        raise FamcError(f"{where}: kit exported for space {manifest.space!r}, not {space.name!r}; "
                        f"pass --space {manifest.space} or export a kit for {space.name}")  # fmt: skip
    if {manifest.graphs[g].signature for g in manifest.ids("layer")} != set(all_signatures(space)):
        raise FamcError(f"{where}: its layer graphs are not the layers {space.name} has now; "
                        "export the kit again with `famc profile export-kit`")  # fmt: skip
    if manifest.format not in IMPORTERS[tool].formats:
        tools = " or ".join(t for t, i in IMPORTERS.items() if manifest.format in i.formats)
        raise FamcError(f"{where}: a {manifest.format} kit cannot be timed by {tool}; "
                        f"use --tool {tools}")  # fmt: skip
    return manifest


def _device(host: HostInfo, device: str | None, cores: int | None) -> Device:
    """The device as the kit's runner recorded it, ``--device``/``--cores`` taking precedence,
    ``unknown`` (one core) where neither says."""
    return Device(cpu=device or host.cpu or UNKNOWN, platform=host.platform or UNKNOWN,
                  cores=cores or host.count("cores") or 1, gpu=host.gpu or None,
                  governor=host.governor or None)  # fmt: skip
