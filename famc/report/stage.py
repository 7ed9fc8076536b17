"""Build stage 5, report: the typed ``family.json``, the search trace, the gates and the reports.

The manifest is assembled once from the earlier stages' typed outputs; the HTML and Markdown
reports are then rendered from the file that was written, so they never show a number the release
does not contain.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import os
import platform
import time
from pathlib import Path

import torch

from famc import __version__
from famc.config import Budget
from famc.diff import diff_members
from famc.evaluate.cache import CachedEvaluation
from famc.evaluate.stage import Evaluated, FamilyResult, MemberResult
from famc.export import Artifacts
from famc.export.records import member_files
from famc.finetune.stage import Finetuned
from famc.io import write_text
from famc.metrics import nfr
from famc.prepare import MemberPlan, Prepared
from famc.report import write_report
from famc.report.gates import check_gates
from famc.report.release import (
    DIGEST_NAME,
    FAMILY_JSON,
    Environment,
    Evaluations,
    FamilyBlock,
    FamilyManifest,
    FamilyPreprocessing,
    FinetuneMember,
    FinetuneRecord,
    FrontPoint,
    LatencyMs,
    MemberRecord,
    SearchFront,
    SearchRecord,
    Summary,
    digest_line,
)
from famc.search.evolution import Candidate
from famc.search.family import FoundMember
from famc.search.select import nfr_paragon, pareto_front, top1_paragon
from famc.search.stage import Families
from famc.ship import ShippedMember
from famc.space import Arch, flops, params


def _latency(p: Prepared, plan: MemberPlan, arch: Arch, shipped: ShippedMember | None) -> LatencyMs:
    """Predicted vs measured, and whether this host is the one the table's figures hold on."""
    predicted = plan.predicted_ms(p.space, arch)
    lat = LatencyMs(
        predicted=None if predicted is None else round(predicted, 4),
        budget=plan.budget if plan.cost_model.needs_table else None,
        tolerance_pct=plan.target.latency_tolerance_pct,
        table_host=None if plan.table is None else plan.table.validated_on,
    )
    if shipped is None:
        return lat
    m = shipped.latency
    update: dict[str, object] = {"measured_on": m.measured_on, "host": m.host}
    if m.timing is not None:
        measured = round(m.timing.median_ms, 4)
        update |= {"measured": measured, "calls": m.timing.n,
                   "measured_p90": round(m.timing.p90_ms, 4)}  # fmt: skip
        if lat.predicted is not None:  # from the recorded figures, so a reader gets the same
            update["error_pct"] = round(100 * (lat.predicted - measured) / measured, 2)
    if (
        m.host is not None
        and lat.table_host is not None
        and not m.host.same_machine(lat.table_host)
    ):
        update["note"] = (f"measured on {m.host.describe()}, but the table's predictions were "
                          f"validated on {lat.table_host.describe()}")  # fmt: skip
    return lat.model_copy(update=update)


def _point(c: Candidate) -> FrontPoint:
    return FrontPoint(arch=c.arch.to_dict(), top1=round(c.score.top1, 4),
                      nfr=round(c.score.nfr or 0.0, 4), cost=round(c.cost, 6),
                      generation=c.generation)  # fmt: skip


def search_front(found: FoundMember, rule: str) -> SearchFront | None:
    """The member's search as Top-1 vs NFR (None for a member searched without references)."""
    scored = [c for c in found.trace if c.score.nfr is not None and not c.score.partial]
    if not scored or found.best.score.nfr is None:
        return None
    return SearchFront(
        selection=rule, evaluated=len(scored), front=[_point(c) for c in pareto_front(scored)],
        top1_paragon=_point(top1_paragon(scored)), nfr_paragon=_point(nfr_paragon(scored)),
        chosen=_point(found.best),
    )  # fmt: skip


def _member(p: Prepared, r: MemberResult, shipped: ShippedMember | None) -> MemberRecord:
    arch, plan = r.found.best.arch, r.plan
    latency = _latency(p, plan, arch, shipped)
    artifacts = None
    if shipped is not None:
        artifacts = Artifacts(**{
            fmt: rec.model_copy(update={"path": f"members/{plan.name}/{rec.path}"} if rec.path else {})
            for fmt, rec in shipped.artifacts.items()
        })  # fmt: skip
    return MemberRecord(
        name=plan.name, target=Path(plan.target_path).stem, arch=arch.to_dict(),
        contains=r.found.contains, top1=r.top1, search_top1=round(r.found.best.score.top1, 3),
        latency_ms=latency, budget=Budget(**{plan.cost_model.name: plan.budget}),
        flops=flops(p.space, arch), params=params(p.space, arch),
        path=None if shipped is None else f"members/{plan.name}", artifacts=artifacts,
        files=None if shipped is None else member_files(shipped.directory),
        search_front=search_front(r.found, p.cfg.search.selection),
    )  # fmt: skip


def _block(p: Prepared, result: FamilyResult) -> FamilyBlock:
    return FamilyBlock(members=[_member(p, r, None) for r in result.members],
                       pairwise=result.pairwise)  # fmt: skip


def _finetune(tuned: Finetuned) -> FinetuneRecord:
    """Each member's Top-1 and NFR against the member below, before and after fine-tuning."""
    before, after = tuned.before.members, tuned.evaluated.family.members
    rows = []
    for i, (b, a) in enumerate(zip(before, after, strict=True)):
        ref_b, ref_a = (before[i - 1].test, after[i - 1].test) if i else (None, None)
        rows.append(FinetuneMember(
            name=a.plan.name, reference=before[i - 1].plan.name if i else None,
            top1_before=b.top1, top1_after=a.top1,
            nfr_before=None if ref_b is None else round(nfr(ref_b, b.test), 4),
            nfr_after=None if ref_a is None else round(nfr(ref_a, a.test), 4),
        ))  # fmt: skip
    return FinetuneRecord(**tuned.settings.model_dump(), train_images=tuned.images,
                          seconds=tuned.seconds, weights_shared=False, members=rows,
                          pairwise_before=tuned.before.pairwise,
                          summary_before=tuned.before.summary())  # fmt: skip


def _summary(evaluated: Evaluated, ev: CachedEvaluation, started: float) -> Summary:
    base = evaluated.baseline
    return Summary(
        family=evaluated.family.summary(),
        baseline=None if base is None else base.summary(),
        nfr_reduction_pct=evaluated.nfr_reduction_pct(),
        top1_cost=evaluated.top1_cost(),
        build_seconds=round(time.perf_counter() - started, 1),
        evaluations=Evaluations(run=ev.evaluated, cache_hits=ev.cache.hits),
    )


def _preprocessing(p: Prepared, families: Families) -> FamilyPreprocessing:
    d = p.data
    return FamilyPreprocessing(
        channels=d.channels, mean=list(d.mean), std=list(d.std), class_names=list(d.classes),
        crop_ratio=d.crop_ratio,
        resolution={m.name: m.best.arch.resolution for m in families.regnas},
    )  # fmt: skip


def _version(module: str) -> str | None:
    try:
        return str(importlib.metadata.version(module))
    except importlib.metadata.PackageNotFoundError:
        return None


def environment() -> Environment:
    """What this release was made with, for ``family.json``."""
    from famc.latency.runtimes import RUNTIMES, device_info

    env_vars = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
    host = device_info(RUNTIMES["torch-cpu"])
    return Environment(
        famc=__version__, python=platform.python_version(), torch=torch.__version__,
        onnx=_version("onnx"), onnxruntime=_version("onnxruntime"),
        coremltools=_version("coremltools"), tensorrt=_version("tensorrt"),
        cpu=host.cpu, cores=host.cores, torch_threads=torch.get_num_threads(),
        thread_env={k: os.environ[k] for k in env_vars if k in os.environ},
    )  # fmt: skip


def _trace(families: Families) -> str:
    rows = [
        {"family": fam, "member": m.name, **c.to_dict()}
        for fam, found in (("reg-nas", families.regnas), ("baseline", families.baseline or []))
        for m in found
        for c in m.trace
    ]
    return "".join(json.dumps(t) + "\n" for t in rows)


def report(p: Prepared, families: Families, evaluated: Evaluated, ev: CachedEvaluation,
           shipped: list[ShippedMember], out_dir: Path, *, gates: bool, started: float,
           tuned: Finetuned | None = None) -> FamilyManifest:  # fmt: skip
    """Write family.json, trace.jsonl, report.html and report.md into ``out_dir``; ``evaluated``
    is the family as shipped (after fine-tuning, when ``tuned`` says there was some)."""
    members = [_member(p, r, s) for r, s in zip(evaluated.family.members, shipped, strict=True)]
    pairs = evaluated.family.pairwise
    previous = p.cfg.gates.previous_release
    update = None if previous is None else diff_members(Path(previous), members, out_dir)
    search = SearchRecord(**p.cfg.search.model_dump(), search_images=len(p.search_split),
                          calib_images=len(p.calib), split_overlap_allowed=p.split_overlap_allowed,
                          evaluation=p.cfg.evaluation.model_copy(update={"cache_dir": None, "workers": None}))  # fmt: skip
    manifest = FamilyManifest(
        famc_version=__version__,
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        space=p.space.name,
        preprocessing=_preprocessing(p, families),
        members=members,
        pairwise=pairs,
        baseline=None if evaluated.baseline is None else _block(p, evaluated.baseline),
        summary=_summary(evaluated, ev, started),
        search=search,
        inputs=p.inputs,
        environment=environment(),
        finetune=None if tuned is None else _finetune(tuned),
        update=update,
        gates=check_gates(members, pairs, p.cfg.gates, update) if gates else None,
    )
    write_text(out_dir / "trace.jsonl", _trace(families))
    write_text(out_dir / FAMILY_JSON, manifest.model_dump_json(indent=2) + "\n")
    write_text(out_dir / DIGEST_NAME, digest_line(out_dir / FAMILY_JSON))
    write_report(out_dir)
    return manifest
