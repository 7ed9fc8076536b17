"""``famc profile export-kit``: what a device that cannot run Python needs to time a latency table.

A kit is a directory: one graph per layer signature, the empty-graph probe (the runtime's per-call
cost, subtracted from every entry), whole sub-networks to fit and score the table's correction on,
``manifest.json`` saying what each graph is, and ``run.sh``, which times every graph with the
device's own tool and leaves one output file per graph under ``results/<tool>/``;
``famc profile import`` (``famc.latency.importers``) turns those files into a table.

The graphs are the ones ``famc profile`` times (``layer_module``, ``CallProbe``, sub-networks
extracted from a seeded supernet), exported by the functions member artifacts are exported by
(``onnx_model`` via ``Graph.onnx_bytes``; ``mlprogram`` for CoreML), so an imported table means
what a measured one means. Signatures contain ':', so graphs get short ids the manifest maps back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

import famc
from famc.errors import FamcError
from famc.io import RELEASE_MARKER, load_json, sha256_path, staged_directory, write_text
from famc.latency.graphs import CallProbe, layer_module
from famc.latency.profile import sample_archs
from famc.latency.runtimes import TRACE_BATCH, Graph
from famc.latency.signatures import all_signatures
from famc.progress import Reporter
from famc.space import ArchRecord, SearchSpace, get_space
from famc.supernet import build_supernet

KitFormat = Literal["onnx", "coreml"]
Role = Literal["probe", "layer", "fit", "holdout"]
SCHEMA_VERSION: Literal[1] = 1
MANIFEST = "manifest.json"
RUNNER = "run.sh"
PROBE = "probe"
TEMPLATE = "results/csv/template.csv"  # the CSV importer's file, to fill in by hand
DEFAULT_VALIDATE = 20


class KitGraph(BaseModel):
    """One graph of a kit: its file, the input it is timed with, and what its timing is for."""

    model_config = ConfigDict(extra="forbid", strict=True)

    file: str  # relative to the kit
    shape: list[int]  # the timed input, batch first
    sha256: str
    role: Role
    signature: str | None = None  # a layer graph: the table entry it measures
    arch: ArchRecord | None = None  # a whole network (fit or hold-out)

    @model_validator(mode="after")
    def _consistent(self) -> KitGraph:
        if (self.role == "layer") != (self.signature is not None):
            raise ValueError("a layer graph, and only a layer graph, carries a signature")
        if (self.role in ("fit", "holdout")) != (self.arch is not None):
            raise ValueError("a fit or hold-out graph, and only those, carries an arch")
        return self


class Manifest(BaseModel):
    """What a kit holds; the importer trusts nothing else (graph ids, roles, setting)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    schema_version: Literal[1]
    famc_version: str
    space: str
    resolutions: list[int] = Field(min_length=1)
    format: KitFormat
    batch: int = Field(ge=1)
    threads: int = Field(ge=1)  # the runner's default intra-op thread count
    seed: int  # of the graphs' random weights and of the sampled sub-networks
    graphs: dict[str, KitGraph]

    @model_validator(mode="after")
    def _one_probe(self) -> Manifest:
        if [g for g, v in self.graphs.items() if v.role == "probe"] != [PROBE]:
            raise ValueError(f"a kit has exactly one probe graph, with id {PROBE!r}")
        return self

    @classmethod
    def load(cls, kit: Path) -> Manifest:
        return load_json(cls, kit / MANIFEST, "kit manifest",
                         "export the kit again with `famc profile export-kit`")  # fmt: skip

    def ids(self, *roles: Role) -> list[str]:
        return [g for g, v in self.graphs.items() if v.role in roles]


@dataclass(frozen=True)
class _Planned:
    """A graph to write: its id, module and timed input shape, and what it is for."""

    id: str
    module: nn.Module
    shape: tuple[int, ...]
    role: Role
    signature: str | None = None
    arch: ArchRecord | None = None


@dataclass(frozen=True)
class KitReport:
    path: Path
    manifest: Manifest
    elapsed_s: float

    def summary(self) -> str:
        m = self.manifest
        return (
            f"wrote {len(m.ids('layer'))} layer graph(s), the probe, {len(m.ids('fit'))} fit and "
            f"{len(m.ids('holdout'))} hold-out network(s) ({m.format}) in {self.elapsed_s:.0f} s "
            f"-> {self.path}; run `./{RUNNER}` there on the device, then `famc profile import`"
        )


def export_kit(space: str | SearchSpace, fmt: str, out: str | Path, *, batch: int = 1,
               threads: int = 1, validate: int = DEFAULT_VALIDATE, fit: int | None = None,
               seed: int = 0, force: bool = False, progress: bool = True) -> KitReport:  # fmt: skip
    """Write a kit for ``space`` to ``out`` (see the module doc). ``validate`` hold-out and ``fit``
    (default: as many) fit networks, as ``famc profile --validate N --fit M`` times them."""
    started = time.perf_counter()
    space = get_space(space) if isinstance(space, str) else space
    fit = validate if fit is None else fit
    _check_args(fmt, batch, threads, validate, fit)
    out = Path(out)
    _check_out(out, force)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        planned = _plan(space, batch, validate, fit, seed)
        with (
            staged_directory(out) as tmp,
            Reporter.auto(progress).task("kit graphs", len(planned)) as task,
        ):
            graphs = {}
            for p in planned:
                graphs[p.id] = _write_graph(tmp, p, fmt)
                task.advance()
            manifest = Manifest(schema_version=SCHEMA_VERSION, famc_version=famc.__version__,
                                space=space.name, resolutions=list(space.preset.resolutions),
                                format=cast(KitFormat, fmt), batch=batch, threads=threads,
                                seed=seed, graphs=graphs)  # fmt: skip
            write_text(tmp / MANIFEST, manifest.model_dump_json(indent=1) + "\n")
            write_text(tmp / RUNNER, runner_script(manifest), mode=0o755)
            write_text(tmp / TEMPLATE, _template(manifest))
    return KitReport(out, manifest, time.perf_counter() - started)


def _check_args(fmt: str, batch: int, threads: int, validate: int, fit: int) -> None:
    if fmt not in WRITERS:
        raise FamcError(f"--format {fmt!r}: a kit is one of {', '.join(WRITERS)}")
    for name, value in (("batch", batch), ("threads", threads)):
        if value < 1:
            raise FamcError(f"--{name} must be at least 1, got {value}")
    if validate and (validate < 2 or fit < 2):
        raise FamcError(
            f"--validate {validate} --fit {fit}: fitting and scoring each need at least 2 "
            "sub-networks (or --validate 0 for none)"
        )


def _check_out(out: Path, force: bool) -> None:
    """An existing, non-empty ``out`` is replaced only with ``--force`` and only if famc wrote it."""
    if out.exists() and not out.is_dir():
        raise FamcError(f"--out {out} is a file; give a directory for the kit")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if not force:
        raise FamcError(f"{out} already exists: pass --force to replace it, or another --out")
    if not (out / RELEASE_MARKER).is_file():
        raise FamcError(
            f"{out} exists and was not written by famc (no {RELEASE_MARKER}): --force replaces "
            "only what famc wrote; choose another --out"
        )


def _plan(space: SearchSpace, batch: int, validate: int, fit: int, seed: int) -> list[_Planned]:
    """Every graph of the kit, with ids: the probe, ``layer000``.. in signature order, then
    ``net000``.. (the first ``fit`` are fitted on, the others held out)."""
    planned = [_Planned(PROBE, CallProbe(), (batch, 1), "probe")]
    for i, (sig, spec) in enumerate(all_signatures(space).items()):
        planned.append(_Planned(f"layer{i:03d}", layer_module(spec), spec.input_shape(batch),
                                "layer", signature=sig))  # fmt: skip
    if validate:
        supernet = build_supernet(space)
        channels = space.preset.in_channels
        for i, arch in enumerate(sample_archs(space, fit + validate, seed)):
            shape = (batch, channels, arch.resolution, arch.resolution)
            planned.append(_Planned(f"net{i:03d}", supernet.extract(arch).eval(), shape,
                                    "fit" if i < fit else "holdout",
                                    arch=ArchRecord.model_validate(arch.to_dict())))  # fmt: skip
    return planned


def _write_graph(kit: Path, p: _Planned, fmt: str) -> KitGraph:
    path = kit / "graphs" / f"{p.id}{SUFFIX[fmt]}"
    path.parent.mkdir(parents=True, exist_ok=True)
    WRITERS[fmt](p.module, p.shape, path)
    return KitGraph(file=path.relative_to(kit).as_posix(), shape=list(p.shape),
                    sha256=sha256_path(path), role=p.role, signature=p.signature, arch=p.arch)  # fmt: skip


def _write_onnx(module: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """``onnx_model`` (traced at batch 2, dynamic batch axis ``batch``), as members ship."""
    path.write_bytes(Graph(module, shape).onnx_bytes())


def _write_coreml(module: nn.Module, shape: tuple[int, ...], path: Path) -> None:
    """An ML Program with the timed input shape fixed: Xcode's performance report times a
    package at its declared shape."""
    from famc.export.coreml import mlprogram

    example = torch.zeros((TRACE_BATCH, *shape[1:]))
    mlprogram(module, example, shape).save(str(path))


SUFFIX: dict[str, str] = {"onnx": ".onnx", "coreml": ".mlpackage"}
WRITERS: dict[str, Callable[[nn.Module, tuple[int, ...], Path], None]] = {
    "onnx": _write_onnx,
    "coreml": _write_coreml,
}


def _template(m: Manifest) -> str:
    """The CSV importer's file with every graph id and empty figures, to fill in by hand."""
    return "graph,median_ms,p90_ms\n" + "".join(f"{g},,\n" for g in m.graphs)


def runner_script(m: Manifest) -> str:
    """``run.sh`` for ``m``: ONNX kits are timed by a tool; CoreML kits only explain how."""
    return (_ONNX_RUNNER if m.format == "onnx" else _COREML_RUNNER).format(
        space=m.space,
        batch=m.batch,
        threads=m.threads,
        n=len(m.graphs),
        template=TEMPLATE,
        runs="".join(f"run {g} {'x'.join(map(str, v.shape))}\n" for g, v in m.graphs.items()),
    )


_HOST = r"""host() {{  # the device, as `famc profile import` records it
  if [ -r /proc/cpuinfo ]; then cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
  else cpu=$(sysctl -n machdep.cpu.brand_string 2>/dev/null || true); fi
  echo "tool=$TOOL"
  echo "threads=$THREADS"
  echo "cpu=$cpu"
  echo "cores=$(getconf _NPROCESSORS_ONLN 2>/dev/null || nproc 2>/dev/null || true)"
  echo "platform=$(uname -srm)"
  echo "governor=$(cat /sys/devices/system/cpu/cpu0/cpufreq/scaling_governor 2>/dev/null || true)"
  echo "gpu=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1 || true)"
}}
"""

_ONNX_RUNNER = (
    r"""#!/bin/sh
# famc latency kit: space {space}, ONNX, batch {batch}. Times every graph of manifest.json with the
# device's own tool, one output file per graph under results/<tool>/, then on any host with famc:
#   famc profile import --space {space} --from <this directory> --tool <tool> --out TABLE.yaml
#
#   ./run.sh [onnxruntime_perf_test|trtexec]        (default: onnxruntime_perf_test)
#
# Environment: THREADS (intra-op threads, default {threads}), REPS (timed calls per graph, default
# 1000), PERF_TEST / TRTEXEC (the tools' paths), PERF_TEST_ARGS / TRTEXEC_ARGS (extra flags, e.g.
# PERF_TEST_ARGS="-e cuda"; then import with --runtime ort-cuda). Keep the device otherwise idle.
set -eu
cd "$(dirname "$0")"
TOOL=${{1:-onnxruntime_perf_test}}
THREADS=${{THREADS:-{threads}}}
REPS=${{REPS:-1000}}
BATCH={batch}
OUT=results/$TOOL
case $TOOL in
  onnxruntime_perf_test|trtexec) mkdir -p "$OUT" ;;
  *) echo "usage: ./run.sh [onnxruntime_perf_test|trtexec]" >&2; exit 2 ;;
esac
"""
    + _HOST
    + r"""host > "$OUT/host.txt"
I=0
run() {{  # graph id, input shape BxCxHxW
  I=$((I + 1))
  echo "[$I/{n}] $1" >&2
  case $TOOL in
    onnxruntime_perf_test)
      rm -f "$OUT/$1.txt"  # the tool appends to its result file
      "${{PERF_TEST:-onnxruntime_perf_test}}" -I -m times -r "$REPS" -x "$THREADS" -f "batch:$BATCH" \
        ${{PERF_TEST_ARGS:-}} "graphs/$1.onnx" "$OUT/$1.txt" > "$OUT/$1.log" 2>&1 ;;
    trtexec)
      "${{TRTEXEC:-trtexec}}" "--onnx=graphs/$1.onnx" "--shapes=input:$2" --warmUp=200 \
        --duration=0 "--iterations=$REPS" --noDataTransfers ${{TRTEXEC_ARGS:-}} \
        "--exportTimes=$OUT/$1.json" > "$OUT/$1.log" 2>&1 ;;
  esac || {{ echo "$1 failed: see $OUT/$1.log" >&2; exit 1; }}
}}
{runs}echo "done: results in $OUT/" >&2
"""
)

_COREML_RUNNER = r"""#!/bin/sh
# famc latency kit: space {space}, CoreML, batch {batch}. No command-line tool times a CoreML
# package, so this script only explains: on a Mac with the device attached, open each
# graphs/<id>.mlpackage in Xcode, tab "Performance", "+" (choose the device), and write the median
# prediction time per graph id (ms) into results/csv/latency.csv (start from {template}; the
# graph ids are in manifest.json). Then on any host with famc:
#   famc profile import --space {space} --from <this directory> --tool csv --runtime coreml \
#       --device "<device model>" --cores <CPU cores> --out TABLE.yaml
echo "CoreML graphs are timed in Xcode's performance report: read the comment at the top of $0" >&2
exit 2
"""
