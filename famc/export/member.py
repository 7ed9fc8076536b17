"""Export one family member to every requested format, validating each artifact as it lands.

Failures are recorded per format instead of raised, so one exotic backend cannot block shipping
the others; the manifest (``artifacts.json``) is what ``famc verify`` and reports read back.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor, nn

from famc import io as _fs
from famc.errors import FamcError
from famc.export.coreml import Precision, can_predict_coreml, export_coreml, run_coreml
from famc.export.meta import Preprocessing
from famc.export.onnx import export_onnx, run_onnx
from famc.export.parity import Parity, default_atol, parity, torch_logits
from famc.export.tensorrt import export_tensorrt
from famc.export.verify import MANIFEST_NAME, write_golden

FORMATS = ("onnx", "coreml", "tensorrt")
Status = Literal["passed", "parity_failed", "export_failed", "deferred", "skipped"]


class ArtifactRecord(BaseModel):
    """What happened to one format: where the artifact is, its hash, and how well it matched."""

    model_config = ConfigDict(frozen=True)

    format: str
    path: Path | None
    sha256: str | None
    status: Status
    parity: dict[str, float | int | None] | None
    seconds: float
    detail: str


def export_member(
    model: nn.Module,
    out_dir: Path,
    pre: Preprocessing,
    formats: list[str],
    test_batches: Iterable[tuple[Tensor, Tensor]],
    *,
    name: str = "model",
    atol: float | None = None,
    opset: int = 17,
    coreml_precision: Precision = "fp32",
    golden_samples: int = 16,
    trt_batches: tuple[int, int, int] = (1, 8, 64),
) -> dict[str, ArtifactRecord]:
    """Export, validate against PyTorch on ``test_batches``, write golden I/O and a manifest.

    ``tensorrt`` builds from the ONNX file, so it implies ``onnx``. ``atol`` defaults per format
    (1e-4 fp32, looser for fp16 CoreML). ``seconds`` is export/build time only.
    """
    out_dir = Path(out_dir)
    fmts = _normalize(formats)
    pairs = [(x.detach().cpu(), y.detach().cpu().reshape(-1)) for x, y in test_batches]
    if not pairs:
        raise FamcError("export_member needs at least one (inputs, labels) test batch")
    xs = [x for x, _ in pairs]
    labels = torch.cat([y for _, y in pairs])
    out_dir.mkdir(parents=True, exist_ok=True)
    reference = torch_logits(model, xs)
    golden_x = torch.cat(xs)[:golden_samples]
    write_golden(model, out_dir, golden_x, labels[:golden_samples])

    tols = {
        "onnx": default_atol("fp32"),
        "coreml": default_atol(coreml_precision),
        "tensorrt": default_atol("fp32"),
    }
    if atol is not None:
        tols = dict.fromkeys(tols, atol)

    def judge(p: Parity, fmt: str) -> tuple[Status, Parity, str]:
        ok = p.passed(tols[fmt])
        detail = (
            f"max_abs {p.max_abs:.3g} (atol {tols[fmt]:g}), "
            f"top1 agreement {p.top1_agreement:.4f} over {p.n} samples"
        )
        return ("passed" if ok else "parity_failed"), p, detail

    records: dict[str, ArtifactRecord] = {}
    onnx_path = out_dir / f"{name}.onnx"
    if "onnx" in fmts:
        records["onnx"] = _attempt(
            "onnx",
            lambda: export_onnx(model, onnx_path, pre, opset=opset),
            lambda p: judge(parity(reference, run_onnx(p, xs), labels), "onnx"),
        )
    if "coreml" in fmts:

        def check_coreml(p: Path) -> tuple[Status, Parity | None, str]:
            if not can_predict_coreml():
                why = f"numeric parity needs macOS (this host is {platform.system()})"
                return "skipped", None, f"exported and structurally checked; {why}"
            return judge(parity(reference, run_coreml(p, xs), labels), "coreml")

        records["coreml"] = _attempt(
            "coreml",
            lambda: export_coreml(
                model,
                out_dir / f"{name}.mlpackage",
                pre,
                precision=coreml_precision,
                max_batch=trt_batches[2],
            ),
            check_coreml,
        )
    if "tensorrt" in fmts:
        records["tensorrt"] = _tensorrt_record(
            records["onnx"],
            out_dir / f"{name}.engine",
            pre,
            trt_batches,
            torch.cat(xs),
            reference,
            labels,
            judge,
        )
    _write_manifest(out_dir, pre, records, tols)
    return records


def _normalize(formats: list[str]) -> list[str]:
    fmts = [f.strip().lower() for f in formats]
    unknown = sorted(set(fmts) - set(FORMATS))
    if unknown:
        raise FamcError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if not fmts:
        raise FamcError(f"no export formats given; choose from {', '.join(FORMATS)}")
    if "tensorrt" in fmts and "onnx" not in fmts:
        fmts.append("onnx")
    return fmts


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    msg = lines[0] if lines else ""
    return msg if isinstance(e, FamcError) else f"{type(e).__name__}: {msg}"


def _attempt(
    fmt: str,
    export: Callable[[], Path],
    validate: Callable[[Path], tuple[Status, Parity | None, str]],
) -> ArtifactRecord:
    """Run one exporter + its validation, turning any failure into a record."""
    t0 = time.perf_counter()
    try:
        path = export()
    except Exception as e:  # one failing backend must not stop the others
        return ArtifactRecord(
            format=fmt,
            path=None,
            sha256=None,
            status="export_failed",
            parity=None,
            seconds=time.perf_counter() - t0,
            detail=_one_line(e),
        )
    seconds = time.perf_counter() - t0
    try:
        status, p, detail = validate(path)
    except Exception as e:  # exported but cannot run: unusable, so it counts as a failed export
        status, p, detail = "export_failed", None, f"artifact does not run: {_one_line(e)}"
    return ArtifactRecord(
        format=fmt,
        path=path,
        sha256=_fs.sha256_path(path),
        status=status,
        parity=p.to_dict() if p is not None else None,
        seconds=seconds,
        detail=detail,
    )


def _tensorrt_record(
    onnx_record: ArtifactRecord,
    engine_path: Path,
    pre: Preprocessing,
    batches: tuple[int, int, int],
    inputs: Tensor,
    reference: Tensor,
    labels: Tensor,
    judge: Callable[[Parity, str], tuple[Status, Parity, str]],
) -> ArtifactRecord:
    if onnx_record.path is None or onnx_record.status == "export_failed":
        return ArtifactRecord(
            format="tensorrt",
            path=None,
            sha256=None,
            status="export_failed",
            parity=None,
            seconds=0.0,
            detail="TensorRT builds from ONNX, and the ONNX export failed",
        )
    t0 = time.perf_counter()
    try:
        res = export_tensorrt(
            onnx_record.path,
            engine_path,
            pre,
            *batches,
            inputs=inputs,
            reference_logits=reference,
            labels=labels,
        )
    except Exception as e:
        return ArtifactRecord(
            format="tensorrt",
            path=None,
            sha256=None,
            status="export_failed",
            parity=None,
            seconds=time.perf_counter() - t0,
            detail=_one_line(e),
        )
    seconds = time.perf_counter() - t0
    if res.status == "deferred":
        return ArtifactRecord(
            format="tensorrt",
            path=res.script_path,
            sha256=_fs.sha256_path(res.script_path),
            status="deferred",
            parity=None,
            seconds=seconds,
            detail=f"{res.reason}; run {res.script_path.name} on the deployment GPU host",
        )
    if res.engine_path is None or res.parity is None:  # cannot happen: inputs were given
        raise RuntimeError("TensorRT build returned no engine or parity")
    status, p, detail = judge(res.parity, "tensorrt")
    versions = ", ".join(f"{k} {v}" for k, v in res.versions.items())
    return ArtifactRecord(
        format="tensorrt",
        path=res.engine_path,
        sha256=_fs.sha256_path(res.engine_path),
        status=status,
        parity=p.to_dict(),
        seconds=seconds,
        detail=f"{detail}; {versions}",
    )


def _write_manifest(
    out_dir: Path, pre: Preprocessing, records: dict[str, ArtifactRecord], tols: dict[str, float]
) -> None:
    artifacts = {}
    for fmt, rec in records.items():
        d = rec.model_dump(mode="json")
        d["path"] = rec.path.name if rec.path is not None else None  # relocatable dir
        artifacts[fmt] = d
    doc = {
        "preprocessing": pre.model_dump(mode="json"),
        "atol": {f: tols[f] for f in records},
        "artifacts": artifacts,
    }
    _fs.write_text(out_dir / MANIFEST_NAME, json.dumps(doc, indent=2, sort_keys=True) + "\n")
