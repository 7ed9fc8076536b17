"""Export one family member to every requested format, validating each artifact as it lands.

Failures are recorded per format instead of raised, so one exotic backend cannot block shipping
the others; the manifest (``artifacts.json``) is what ``famc verify`` and reports read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from famc import io as _fs
from famc.data import to_input
from famc.data.preprocessing import Preprocessing
from famc.errors import FamcError
from famc.export.formats import FORMATS, ExportJob, Format, with_dependencies
from famc.export.parity import Parity, parity, torch_logits
from famc.export.records import (
    ArtifactRecord,
    Artifacts,
    ArtifactsManifest,
    Status,
    member_files,
)
from famc.export.verify import MANIFEST_NAME, write_golden
from famc.member import load_member, member_info


def _normalize(formats: Sequence[str]) -> list[str]:
    fmts = [f.strip().lower() for f in formats]
    unknown = sorted(set(fmts) - set(FORMATS))
    if unknown:
        raise FamcError(f"unknown export format(s) {unknown}; choose from {', '.join(FORMATS)}")
    if not fmts:
        raise FamcError(f"no export formats given; choose from {', '.join(FORMATS)}")
    return with_dependencies(fmts)


def export_member(
    model: nn.Module,
    out_dir: Path,
    pre: Preprocessing,
    formats: Sequence[str],
    test_batches: Iterable[tuple[Tensor, Tensor]],
    *,
    precision: str = "fp32",
    golden_samples: int = 16,
) -> dict[str, ArtifactRecord]:
    """Export, validate against PyTorch on ``test_batches``, write golden I/O and a manifest.

    Formats made from another (TensorRT from ONNX) bring it along. ``seconds`` is export time only.
    """
    job = ExportJob(model, Path(out_dir), pre, precision)
    fmts = _normalize(formats)
    pairs = [(x.detach().cpu(), y.detach().cpu().reshape(-1)) for x, y in test_batches]
    if not pairs:
        raise FamcError("export_member needs at least one (inputs, labels) test batch")
    xs = [x for x, _ in pairs]
    labels = torch.cat([y for _, y in pairs])
    job.directory.mkdir(parents=True, exist_ok=True)
    reference = torch_logits(model, xs)
    write_golden(model, job.directory, torch.cat(xs)[:golden_samples], labels[:golden_samples])
    records: dict[str, ArtifactRecord] = {}
    for fmt in fmts:
        check = _parity_check(FORMATS[fmt], xs, reference, labels)
        records[fmt] = _export_format(job, FORMATS[fmt], records, check)
    made = {r.path for r in records.values()} | {MANIFEST_NAME}
    others = [f for f in member_files(job.directory) if f.path not in made]
    manifest = ArtifactsManifest(preprocessing=pre, artifacts=Artifacts(**records), files=others)
    _fs.write_text(job.directory / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
    return records


Check = Callable[[Path, float], tuple[Status, Parity | None, str]]


def _parity_check(f: Format, xs: list[Tensor], reference: Tensor, labels: Tensor) -> Check:
    """Run the artifact on the test inputs and judge it against PyTorch's logits."""

    def check(path: Path, atol: float) -> tuple[Status, Parity | None, str]:
        if (why := f.cannot_run()) is not None:
            return "skipped", None, f"exported and structurally checked; {why}"
        p = parity(reference, f.run(path, xs), labels)
        detail = (
            f"max_abs {p.max_abs:.3g} (atol {atol:g}), "
            f"top1 agreement {p.top1_agreement:.4f} over {p.n} samples"
        )
        if f.host is not None:
            detail += f"; {f.host()}"
        return ("passed" if p.passed(atol) else "parity_failed"), p, detail

    return check


def _export_format(
    job: ExportJob, f: Format, done: dict[str, ArtifactRecord], check: Check
) -> ArtifactRecord:
    """Build one format and check it, turning any failure into a record."""
    atol = f.atol(job.precision)

    def record(path: Path | None, status: Status, seconds: float, detail: str,
               p: Parity | None = None) -> ArtifactRecord:  # fmt: skip
        sha = None if path is None else _fs.sha256_path(path)
        size = None if path is None else _fs.size_path(path)
        rel = None if path is None else path.name
        return ArtifactRecord(format=f.name, path=rel, sha256=sha, size=size, status=status,
                              atol=atol, parity=p, seconds=round(seconds, 3),
                              detail=detail)  # fmt: skip

    broken = [n for n in f.needs if done[n].status == "export_failed"]
    if broken:
        return record(None, "export_failed", 0.0, f"built from {broken[0]}, whose export failed")
    if (why := f.cannot_build()) is not None and f.defer is not None:
        script = f.defer(job)
        return record(script, "deferred", 0.0, f"{why}; run {script.name} on the deployment host")
    t0 = time.perf_counter()
    try:
        path = f.build(job)
    except Exception as e:  # one failing backend must not stop the others
        return record(None, "export_failed", time.perf_counter() - t0, _one_line(e))
    seconds = time.perf_counter() - t0
    try:
        status, p, detail = check(path, atol)
    except Exception as e:  # exported but cannot run: unusable, so it counts as a failed export
        return record(path, "export_failed", seconds, f"artifact does not run: {_one_line(e)}")
    return record(path, status, seconds, detail, p)


def _one_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    msg = lines[0] if lines else ""
    return msg if isinstance(e, FamcError) else f"{type(e).__name__}: {msg}"


def export_one(member: Path, formats: Sequence[str], precision: str) -> dict[str, ArtifactRecord]:
    """``famc export``: one member directory, parity on the full test split of its dataset."""
    info = member_info(member)
    model = load_member(member)
    pre = info.preprocessing
    data = info.data.load()
    batches = [
        (to_input(x, pre.resolution, pre.mean, pre.std, channels_last=False), y)
        for x, y in data.test.batches(500)
    ]
    return export_member(model, member, pre, formats, batches, precision=precision)
