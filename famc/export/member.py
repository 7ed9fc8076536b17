"""Export one family member to every requested format, validating each artifact as it lands.

Failures are recorded per format instead of raised, so one exotic backend cannot block shipping
the others; the manifest (``artifacts.json``) is what ``famc verify`` and reports read back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from famc import io as _fs
from famc.data import Images, to_input
from famc.data.preprocessing import Preprocessing
from famc.errors import FamcError
from famc.export.formats import FORMATS, ExportJob, Format, with_dependencies
from famc.export.parity import Parity, ParityPolicy, parity, torch_logits
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


PolicyFor = Callable[[str, str], ParityPolicy]  # (format, precision) -> how it is judged


@dataclass(frozen=True)
class TestInputs:
    """A test split preprocessed exactly as family.json tells consumers to, prepared afresh on every
    pass (PyTorch's reference and each format make one), so a streamed ImageNet-sized split is
    never held in memory: only the logits are."""

    images: Images
    pre: Preprocessing
    batch_size: int = 500

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        r, pre = self.pre.resolution, self.pre
        for x, y in self.images.batches(self.batch_size, resolution=r):
            yield to_input(x, r, pre.mean, pre.std, channels_last=False), y


@dataclass(frozen=True)
class _Inputs:
    """The inputs of re-iterable (inputs, labels) batches, one streamed pass per iteration."""

    batches: Iterable[tuple[Tensor, Tensor]]

    def __iter__(self) -> Iterator[Tensor]:
        return (x.detach().cpu() for x, _ in self.batches)


def _reference(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]],
               golden_samples: int) -> tuple[Tensor, Tensor, Tensor]:  # fmt: skip
    """One pass: PyTorch's logits, the labels, and the first ``golden_samples`` inputs."""
    logits: list[Tensor] = []
    labels: list[Tensor] = []
    first: list[Tensor] = []
    kept = 0
    for x, y in batches:
        x = x.detach().cpu()
        logits.append(torch_logits(model, [x]))
        labels.append(y.detach().cpu().reshape(-1))
        if kept < golden_samples:
            first.append(x[: golden_samples - kept].clone())
            kept += len(first[-1])
    if not logits:
        raise FamcError("export_member needs at least one (inputs, labels) test batch")
    return torch.cat(logits), torch.cat(labels), torch.cat(first)


def export_member(
    model: nn.Module,
    out_dir: Path,
    pre: Preprocessing,
    formats: Sequence[str],
    test_batches: Iterable[tuple[Tensor, Tensor]],
    *,
    precision: str = "fp32",
    policy: PolicyFor | None = None,
    golden_samples: int = 16,
) -> dict[str, ArtifactRecord]:
    """Export, validate against PyTorch on ``test_batches``, write golden I/O and a manifest.

    ``test_batches`` is iterated once for the reference and once per format, so it must be
    re-iterable (a list, or a ``TestInputs`` that streams the split from disk each time).

    Every requested format ends ``passed``, ``failed`` or ``unavailable`` (see ``FORMATS``);
    formats made from another (TensorRT from ONNX) bring it along. ``seconds`` is export time.
    """
    if iter(test_batches) is test_batches:
        raise TypeError("export_member iterates test_batches once per format: pass a list or a "
                        "TestInputs, not an iterator")  # fmt: skip
    job = ExportJob(model, Path(out_dir), pre, precision)
    fmts = _normalize(formats)
    reference, labels, first = _reference(model, test_batches, golden_samples)
    xs = _Inputs(test_batches)
    job.directory.mkdir(parents=True, exist_ok=True)
    write_golden(model, job.directory, first, labels[:golden_samples])
    records: dict[str, ArtifactRecord] = {}
    for fmt in fmts:
        f = FORMATS[fmt]
        judge = _judge(f, xs, reference, labels)
        pol = (policy or _default_policy)(fmt, f.precision(precision))
        records[fmt] = _export_format(job, f, records, pol, judge)
    made = {r.path for r in records.values()} | {MANIFEST_NAME}
    others = [x for x in member_files(job.directory) if x.path not in made]
    manifest = ArtifactsManifest(preprocessing=pre, artifacts=Artifacts(**records), files=others)
    _fs.write_text(job.directory / MANIFEST_NAME, manifest.model_dump_json(indent=2) + "\n")
    return records


def _default_policy(fmt: str, precision: str) -> ParityPolicy:
    return ParityPolicy.default(precision)


Judge = Callable[[Path, ParityPolicy], tuple[Status, Parity, str | None, str]]


def _judge(f: Format, xs: Iterable[Tensor], reference: Tensor, labels: Tensor) -> Judge:
    """Run the artifact on the test inputs and judge it against PyTorch's logits by a policy."""

    def judge(path: Path, pol: ParityPolicy) -> tuple[Status, Parity, str | None, str]:
        p = parity(reference, f.run(path, xs), labels)
        ok = p.meets(pol.fail)
        warning = None
        if ok and pol.warn is not None and not p.meets(pol.warn):
            warning = f"outside the warn level ({pol.warn.describe()}): {p.error(pol.warn):.3g}"
        detail = (f"{pol.fail.statistic_name} {p.error(pol.fail):.3g} (allowed: "
                  f"{pol.fail.describe()}), top-1 agreement {p.top1_agreement:.4f} over {p.n} "
                  f"samples, {p.negative_flips} negative flips")  # fmt: skip
        if f.host is not None:
            detail += f"; {f.host()}"
        return ("passed" if ok else "failed"), p, warning, detail

    return judge


def _export_format(job: ExportJob, f: Format, done: dict[str, ArtifactRecord],
                   pol: ParityPolicy, judge: Judge) -> ArtifactRecord:  # fmt: skip
    """Build one format and check it, turning any failure into a record."""
    base = {"format": f.name, "precision": f.precision(job.precision), "policy": pol}

    def record(status: Status, detail: str, path: Path | None = None, seconds: float = 0.0,
               **more: object) -> ArtifactRecord:  # fmt: skip
        exists = path is not None and path.exists()
        return ArtifactRecord(**base, status=status, detail=detail, seconds=round(seconds, 3),
                              path=None if path is None else path.name,
                              sha256=_fs.sha256_path(path) if exists else None,  # type: ignore[arg-type]
                              size=_fs.size_path(path) if exists else None, **more)  # type: ignore[arg-type]  # fmt: skip

    broken = [n for n in f.needs if done[n].status == "failed"]
    if broken:
        return record("failed", f"built from {broken[0]}, whose export failed")
    if (why := f.missing()) is not None:
        return record("failed", why)
    lacks = f.host_lacks()
    if lacks is not None and f.defer is not None:
        script = f.defer(job)
        return record("unavailable", f"{lacks}; on {f.check_on}, in this member directory: "
                      f"`sh {script.name} && famc verify .`", job.path(f.name))  # fmt: skip
    t0 = time.perf_counter()
    try:
        path = f.build(job)
        if lacks is not None and f.inspect is not None:
            f.inspect(path, job)
    except Exception as e:  # one failing backend must not stop the others
        return record("failed", _one_line(e), seconds=time.perf_counter() - t0)
    seconds = time.perf_counter() - t0
    if lacks is not None:
        return record("unavailable", f"{lacks}; spec, I/O and preprocessing checked against the "
                      f"ONNX artifact; on {f.check_on}: `famc verify .` in this member directory",
                      path, seconds)  # fmt: skip
    try:
        status, p, warning, detail = judge(path, pol)
    except Exception as e:  # exported but cannot run: unusable, so it fails
        return record("failed", f"artifact does not run: {_one_line(e)}", path, seconds)
    return record(
        status,
        detail,
        path,
        seconds,
        parity=p,
        warning=warning,
        min_atol=round(p.error(pol.fail), 9),
    )


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
    return export_member(
        model, member, pre, formats, TestInputs(data.test, pre), precision=precision
    )
