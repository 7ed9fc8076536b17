"""Every export format as one row (Ultralytics' ``export_formats()`` idea): how to build the
artifact, how to run it, what this host lacks to do either, its file suffix and its precision.

Member export, ``famc verify``, the report and config validation all read this table, so adding a
format is adding a row. Two kinds of "cannot" are kept apart: a *missing package* this host could
install (the artifact then fails: a requested format must be produced) and a runtime this host
*cannot have* (CoreML prediction off macOS, TensorRT without a GPU: the artifact is unavailable
here, is still produced where possible, and says how to check it on the right host).
"""

from __future__ import annotations

import importlib.util
import platform
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from famc.data.preprocessing import Preprocessing


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


def _no(*_: object) -> None:
    return None


@dataclass(frozen=True)
class Format:
    """One export format (see the module docstring for ``missing`` vs ``host_lacks``)."""

    name: str
    suffix: str
    build: Callable[[ExportJob], Path]
    run: Callable[[Path, Iterable[Tensor]], Tensor]
    missing: Callable[[], str | None] = _no  # a package to install: the artifact fails
    host_lacks: Callable[[], str | None] = _no  # a runtime this host cannot have: unavailable
    check_on: str = ""  # the host that can check an unavailable artifact, for messages
    defer: Callable[[ExportJob], Path] | None = None  # writes the build for the right host
    inspect: Callable[[Path, ExportJob], None] | None = None  # checks it without running it
    needs: tuple[str, ...] = ()  # formats built first, from which this one is made
    fixed_precision: str | None = None  # None: the target's precision
    host: Callable[[], str] | None = None  # what an artifact built here is tied to

    def precision(self, target_precision: str) -> str:
        return self.fixed_precision or target_precision


def _module_missing(module: str, hint: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        found = importlib.util.find_spec(module) is not None
        return None if found else f"needs {module}, which is not installed ({hint})"

    return missing


def _onnx(job: ExportJob) -> Path:
    from famc.export.onnx import export_onnx

    return export_onnx(job.model, job.path("onnx"), job.pre, opset=job.opset)


def _run_onnx(path: Path, batches: Iterable[Tensor]) -> Tensor:
    from famc.export.onnx import run_onnx

    return run_onnx(path, batches)


def _coreml(job: ExportJob) -> Path:
    from famc.export.coreml import export_coreml

    return export_coreml(job.model, job.path("coreml"), job.pre, precision=job.precision,
                         max_batch=job.batches[2])  # fmt: skip


def _run_coreml(path: Path, batches: Iterable[Tensor]) -> Tensor:
    from famc.export.coreml import run_coreml

    return run_coreml(path, batches)


def _inspect_coreml(path: Path, job: ExportJob) -> None:
    from famc.export.coreml import check_coreml_against

    onnx = job.path("onnx")
    check_coreml_against(path, onnx if onnx.is_file() else None, job.pre)


def _not_macos() -> str | None:
    if platform.system() == "Darwin":
        return None
    return f"CoreML prediction needs macOS (this host is {platform.system()})"


def _tensorrt(job: ExportJob) -> Path:
    from famc.export.tensorrt import export_tensorrt

    return export_tensorrt(job.path("onnx"), job.path("tensorrt"), job.pre, job.batches)


def _tensorrt_script(job: ExportJob) -> Path:
    from famc.export.tensorrt import write_trtexec_script

    return write_trtexec_script(job.path("onnx"), job.path("tensorrt"), job.pre, job.batches)


def _run_tensorrt(path: Path, batches: Iterable[Tensor]) -> Tensor:
    from famc.export.tensorrt import run_tensorrt

    return run_tensorrt(path, batches)


def _no_gpu() -> str | None:
    import torch

    return None if torch.cuda.is_available() else "TensorRT needs a CUDA GPU (this host has none)"


def _engine_versions() -> str:
    from famc.export.tensorrt import engine_versions

    return engine_versions()


FORMATS: dict[str, Format] = {
    "onnx": Format("onnx", ".onnx", _onnx, _run_onnx, fixed_precision="fp32",
                   missing=_module_missing("onnxruntime", "pip install onnxruntime")),
    "coreml": Format("coreml", ".mlpackage", _coreml, _run_coreml,
                     missing=_module_missing("coremltools", "pip install 'famc[coreml]'"),
                     host_lacks=_not_macos, check_on="macOS", inspect=_inspect_coreml),
    "tensorrt": Format("tensorrt", ".engine", _tensorrt, _run_tensorrt,
                       missing=lambda: None if _no_gpu() else _module_missing(
                           "tensorrt", "pip install 'famc[tensorrt]'")(),
                       host_lacks=_no_gpu, check_on="a host with a CUDA GPU and TensorRT",
                       defer=_tensorrt_script, needs=("onnx",), fixed_precision="fp32",
                       host=_engine_versions),  # engines build in true fp32 (TF32 off)
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
