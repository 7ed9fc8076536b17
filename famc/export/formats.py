"""Every export format as one row (Ultralytics' ``export_formats()`` idea): how to build the
artifact, how to run it, why this host cannot, its file suffix and its default tolerance.

Member export, ``famc verify``, the report and config validation all read this table, so adding a
format is adding a row.
"""

from __future__ import annotations

import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from famc.data.preprocessing import Preprocessing
from famc.export.parity import default_atol


@dataclass(frozen=True)
class ExportJob:
    """One member's export: the model, where its artifacts go and how they are shaped."""

    model: nn.Module
    directory: Path
    pre: Preprocessing
    precision: str = "fp32"
    batches: tuple[int, int, int] = (1, 8, 64)  # min / opt / max batch of the artifacts
    opset: int = 17
    name: str = "model"

    def path(self, fmt: str) -> Path:
        return self.directory / f"{self.name}{FORMATS[fmt].suffix}"


@dataclass(frozen=True)
class Format:
    """One export format. ``cannot_build``/``cannot_run`` say why this host cannot (None: it can);
    ``defer`` writes what the right host needs to build it (formats built only on their host)."""

    name: str
    suffix: str
    build: Callable[[ExportJob], Path]
    run: Callable[[Path, Sequence[Tensor]], Tensor]
    cannot_run: Callable[[], str | None]
    cannot_build: Callable[[], str | None] = lambda: None
    defer: Callable[[ExportJob], Path] | None = None
    needs: tuple[str, ...] = ()  # formats built first, from which this one is made
    atol: Callable[[str], float] = default_atol
    host: Callable[[], str] | None = None  # what an artifact built here is tied to
    inspect: Callable[[Path], None] | None = None  # checks what it can without running it


def _fp32(precision: str) -> float:
    return default_atol("fp32")


def _onnx(job: ExportJob) -> Path:
    from famc.export.onnx import export_onnx

    return export_onnx(job.model, job.path("onnx"), job.pre, opset=job.opset)


def _run_onnx(path: Path, batches: Sequence[Tensor]) -> Tensor:
    from famc.export.onnx import run_onnx

    return run_onnx(path, batches)


def _coreml(job: ExportJob) -> Path:
    from famc.export.coreml import export_coreml

    return export_coreml(job.model, job.path("coreml"), job.pre, precision=job.precision,
                         max_batch=job.batches[2])  # fmt: skip


def _run_coreml(path: Path, batches: Sequence[Tensor]) -> Tensor:
    from famc.export.coreml import run_coreml

    return run_coreml(path, batches)


def _inspect_coreml(path: Path) -> None:
    from famc.export.coreml import check_coreml, read_coreml_preprocessing

    check_coreml(path, read_coreml_preprocessing(path))


def _coreml_cannot_run() -> str | None:
    if platform.system() == "Darwin":
        return None
    return f"CoreML prediction needs macOS (this host is {platform.system()})"


def _tensorrt(job: ExportJob) -> Path:
    from famc.export.tensorrt import export_tensorrt

    return export_tensorrt(job.path("onnx"), job.path("tensorrt"), job.pre, job.batches)


def _tensorrt_script(job: ExportJob) -> Path:
    from famc.export.tensorrt import write_trtexec_script

    return write_trtexec_script(job.path("onnx"), job.path("tensorrt"), job.pre, job.batches)


def _run_tensorrt(path: Path, batches: Sequence[Tensor]) -> Tensor:
    from famc.export.tensorrt import run_tensorrt

    return run_tensorrt(path, batches)


def _engine_versions() -> str:
    from famc.export.tensorrt import engine_versions

    return engine_versions()


def _tensorrt_unavailable() -> str | None:
    from famc.export.tensorrt import tensorrt_unavailable_reason

    return tensorrt_unavailable_reason()


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", _onnx, _run_onnx, lambda: None, atol=_fp32),
    "coreml": Format("coreml", ".mlpackage", _coreml, _run_coreml, _coreml_cannot_run,
                     inspect=_inspect_coreml),
    "tensorrt": Format("tensorrt", ".engine", _tensorrt, _run_tensorrt, _tensorrt_unavailable,
                       cannot_build=_tensorrt_unavailable, defer=_tensorrt_script,
                       needs=("onnx",), atol=_fp32,  # engines build in true fp32
                       host=_engine_versions),
}  # fmt: skip


def format_of(path: Path) -> str | None:
    """The format whose artifacts end like ``path`` (None for other files)."""
    return next((f.name for f in FORMATS.values() if path.name.endswith(f.suffix)), None)


def with_dependencies(formats: Sequence[str]) -> list[str]:
    """``formats`` in build order, each preceded by the formats it is made from."""
    out: list[str] = []
    for fmt in formats:
        out += [f for f in (*FORMATS[fmt].needs, fmt) if f not in out]
    return out
