"""Golden I/O and ``famc verify``: re-run shipped artifacts against stored PyTorch outputs.

The golden file pins what the model computed at export time, so any later host (or a tampered or
mis-copied artifact) can be checked without the PyTorch model or training code.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, ValidationError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from famc import io as _fs
from famc.errors import FamcError, format_validation_error
from famc.export.formats import FORMATS, Format, format_of
from famc.export.parity import Parity, parity, torch_logits
from famc.export.records import ArtifactsManifest, artifact_records

GOLDEN_NAME = "golden.safetensors"
MANIFEST_NAME = "artifacts.json"
VerifyStatus = Literal["passed", "parity_failed", "skipped", "error"]


class VerifyResult(BaseModel):
    """One artifact re-run against the golden outputs (or why it could not be run here)."""

    model_config = ConfigDict(frozen=True)

    artifact: str
    format: str
    status: VerifyStatus
    parity: Parity | None = None
    atol: float
    sha256: str | None = None
    seconds: float = 0.0
    detail: str = ""


def write_golden(
    model: nn.Module, directory: Path, inputs: Tensor, labels: Tensor | None = None
) -> Path:
    """Save ``inputs`` and the model's logits on them as ``golden.safetensors`` in ``directory``."""
    directory = Path(directory)
    if inputs.ndim != 4 or inputs.shape[0] == 0:
        raise FamcError(f"golden inputs must be a non-empty NCHW batch, got {tuple(inputs.shape)}")
    x = inputs.detach().cpu().to(torch.float32).contiguous()
    tensors = {"input": x, "logits": torch_logits(model, [x]).contiguous()}
    if labels is not None:
        tensors["labels"] = labels.detach().cpu().reshape(-1).to(torch.int64).contiguous()
    path = directory / GOLDEN_NAME
    with _fs.atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"famc.golden": "1", "torch": torch.__version__})
    return path


def read_golden(directory: Path) -> dict[str, Tensor]:
    path = Path(directory) / GOLDEN_NAME
    if not path.is_file():
        raise FamcError(f"{path} is missing; re-export the member to create golden outputs")
    tensors = load_file(str(path))
    if not {"input", "logits"} <= tensors.keys():
        raise FamcError(f"{path}: needs 'input' and 'logits' tensors, has {sorted(tensors)}")
    return tensors


def verify_dir(directory: Path, atol: float | None = None) -> list[VerifyResult]:
    """Re-run every artifact in a member dir that this host can run; tolerances come from the
    export manifest when present (else ``atol`` / the format's default)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise FamcError(f"{directory}: not a directory")
    golden = read_golden(directory)
    manifest_path = directory / MANIFEST_NAME
    records = {}
    if manifest_path.is_file():
        try:
            manifest = ArtifactsManifest.model_validate_json(manifest_path.read_text())
        except ValidationError as exc:
            raise FamcError(
                format_validation_error(manifest_path, exc, "invalid manifest")
            ) from None
        records = {r.format: r for r in artifact_records(manifest.artifacts)}
    artifacts = sorted(  # dot-names are in-flight temp files of an interrupted export
        p for p in directory.iterdir() if format_of(p) and not p.name.startswith(".")
    )
    if not artifacts:
        suffixes = ", ".join(f.suffix for f in FORMATS.values())
        raise FamcError(f"{directory}: no {suffixes} artifacts to verify")
    results = []
    for path in artifacts:
        f = FORMATS[format_of(path) or ""]
        record = records.get(f.name)
        tol = atol if atol is not None else record.atol if record else f.atol("fp32")
        results.append(_verify_one(path, f, golden, tol, record.sha256 if record else None))
    return results


def _skip_reason(path: Path, f: Format) -> str | None:
    """Why this host cannot run the artifact; CoreML still gets its structural check here."""
    why = f.cannot_run()
    if why is not None and f.inspect is not None:
        f.inspect(path)
        return f"{why}; structure checked"
    return why


def _verify_one(
    path: Path, f: Format, golden: dict[str, Tensor], atol: float, expected_sha: str | None
) -> VerifyResult:
    sha = _fs.sha256_path(path)
    base = {"artifact": path.name, "format": f.name, "atol": atol, "sha256": sha}
    note = ""
    if expected_sha is not None and expected_sha != sha:
        note = "; sha256 differs from the export manifest"
    try:
        if (why := _skip_reason(path, f)) is not None:
            return VerifyResult(**base, status="skipped", detail=why + note)
        t0 = time.perf_counter()
        logits = f.run(path, [golden["input"]])
        seconds = time.perf_counter() - t0
        p = parity(golden["logits"], logits, golden.get("labels"))
    except FamcError as e:
        # A missing optional runtime is a host limitation, not a broken artifact.
        status: VerifyStatus = "skipped" if "pip install" in str(e) else "error"
        return VerifyResult(**base, status=status, detail=str(e) + note)
    except Exception as e:  # a broken artifact must be reported, not crash the whole verify
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        return VerifyResult(**base, status="error", detail=f"{type(e).__name__}: {msg}{note}")
    ok = p.passed(atol)
    detail = f"max_abs {p.max_abs:.3g} (atol {atol:g}), top1 agreement {p.top1_agreement:.4f}"
    return VerifyResult(
        **base,
        status="passed" if ok else "parity_failed",
        parity=p,
        seconds=seconds,
        detail=detail + note,
    )
