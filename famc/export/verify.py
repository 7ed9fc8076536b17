"""Golden I/O, and re-checking one member directory against the records it was shipped with.

The golden file pins what the model computed at export time, so any later host (or a tampered or
mis-copied artifact) can be checked without the PyTorch model or training code. Nothing a member
directory says about itself is trusted: every file is compared (sha256, size) with records kept
elsewhere (``family.json`` for a release), and each artifact is held to the recorded tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from safetensors.torch import save_file
from torch import Tensor, nn

from famc import io as _fs
from famc.errors import FamcError
from famc.export.formats import FORMATS, Format
from famc.export.parity import Parity, Tolerance, parity, torch_logits
from famc.export.records import ArtifactRecord, FileRecord

GOLDEN_NAME = "golden.safetensors"
MANIFEST_NAME = "artifacts.json"
VerifyStatus = Literal["passed", "failed", "unavailable"]


class VerifyResult(BaseModel):
    """One check of a member: its files, or one artifact re-run against the golden outputs."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    subject: str  # "files" or an artifact's file name
    format: str | None = None
    status: VerifyStatus
    parity: Parity | None = None
    atol: float | None = None
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
    fix = "re-export the member (famc export) to write its golden outputs again"
    tensors = _fs.read_tensors(path, "golden I/O file", fix)
    if not {"input", "logits"} <= tensors.keys():
        raise FamcError(f"{path}: needs 'input' and 'logits' tensors, has {sorted(tensors)}; {fix}")
    return tensors


def check_files(
    directory: Path, expected: Sequence[FileRecord], extra: set[str] | None = None
) -> VerifyResult:
    """Every recorded file present with its recorded sha256 and size; other entries (but the
    ``extra`` names, artifacts built since on the right host) are noted."""
    problems = []
    for rec in expected:
        path = directory / rec.path
        if not path.exists():
            problems.append(f"{rec.path} is missing")
        elif (_fs.size_path(path), _fs.sha256_path(path)) != (rec.size, rec.sha256):
            problems.append(f"{rec.path} differs from its record (sha256/size)")
    known = {r.path for r in expected} | (extra or set())
    stray = sorted(p.name for p in directory.iterdir() if p.name not in known)
    note = f"; ignored {len(stray)} unrecorded file(s): {', '.join(stray)}" if stray else ""
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        return VerifyResult(subject="files", status="failed", detail=problems[0] + more + note)
    return VerifyResult(subject="files", status="passed",
                        detail=f"{len(expected)} file(s) match their records{note}")  # fmt: skip


def verify_member(
    directory: Path, files: Sequence[FileRecord], artifacts: Sequence[ArtifactRecord]
) -> list[VerifyResult]:
    """Check a member's files against ``files`` and re-run each recorded artifact this host can
    run against the golden outputs, by its recorded parity policy. An artifact that was
    unavailable where it was built is checked once its file exists (built on the right host)."""
    directory = Path(directory)
    if not directory.is_dir():
        return [VerifyResult(subject="files", status="failed", detail=f"{directory} is missing")]
    built_since = {
        a.path for a in artifacts if a.status == "unavailable" and a.path and not a.sha256
    }
    results = [check_files(directory, files, built_since)]
    if results[0].status == "failed":
        return results  # a changed file is not re-run: its record no longer vouches for it
    golden = read_golden(directory)
    for rec in artifacts:
        if rec.path is None or rec.status == "failed":
            continue
        path = directory / rec.path
        if not path.exists():
            results.append(VerifyResult(subject=rec.path, format=rec.format, status="unavailable",
                                        detail=rec.detail))  # fmt: skip
            continue
        results.append(_rerun(path, FORMATS[rec.format], golden, rec.policy.fail))
    return results


def _rerun(path: Path, f: Format, golden: dict[str, Tensor], tol: Tolerance) -> VerifyResult:
    base = {"subject": path.name, "format": f.name, "atol": tol.atol}
    try:
        why = f.host_lacks() or f.missing()
        if why is not None:
            return VerifyResult(**base, status="unavailable", detail=why)
        t0 = time.perf_counter()
        p = parity(golden["logits"], f.run(path, [golden["input"]]), golden.get("labels"))
    except Exception as e:  # a broken artifact is a failed check, not a crash of the whole verify
        msg = (str(e).strip().splitlines() or [""])[0]
        return VerifyResult(**base, status="failed", detail=f"{type(e).__name__}: {msg}")
    detail = f"{tol.statistic_name} {p.error(tol):.3g} (allowed: {tol.describe()})"
    return VerifyResult(**base, status="passed" if p.meets(tol) else "failed", parity=p,
                        seconds=time.perf_counter() - t0, detail=detail)  # fmt: skip
