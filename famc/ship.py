"""Build stage 4, ship: each REG-NAS member's weights, its exported artifacts and its latency.

Members are written into the staging directory the build renames into place when complete.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from famc.evaluate.cache import CachedEvaluation
from famc.evaluate.stage import Evaluated, MemberResult
from famc.export import ArtifactRecord, Preprocessing, TestInputs, export_member
from famc.latency.measure import MEMBER_PROTOCOL, Timing, time_calls
from famc.latency.runtimes import RUNTIMES, Device, Graph, device_info, measuring, unavailable
from famc.member import MemberInfo, write_member
from famc.prepare import MemberPlan, Prepared
from famc.supernet import with_memory_format


@dataclass(frozen=True)
class MemberLatency:
    """The shipped artifact timed on its target's runtime here, or why it could not be."""

    timing: Timing | None
    measured_on: str  # runtime, threads and what was timed (or why nothing was)
    host: Device | None


@dataclass(frozen=True)
class ShippedMember:
    name: str
    directory: Path
    artifacts: dict[str, ArtifactRecord]
    latency: MemberLatency


def preprocessing(p: Prepared, resolution: int) -> Preprocessing:
    """What a consumer must feed a member of this build at ``resolution``."""
    d = p.data
    return Preprocessing(resolution=resolution, channels=d.channels, mean=d.mean, std=d.std,
                         class_names=d.classes, crop_ratio=d.crop_ratio)  # fmt: skip


def _ship_member(p: Prepared, m: MemberResult, ev: CachedEvaluation, out_dir: Path,
                 log: Callable[[str], None], tuned: nn.Module | None) -> ShippedMember:  # fmt: skip
    arch, plan = m.found.best.arch, m.plan
    directory = out_dir / "members" / plan.name
    model = ev.evaluator.model(arch).cpu() if tuned is None else copy.deepcopy(tuned).cpu()
    model = with_memory_format(model, torch.contiguous_format)
    pre = preprocessing(p, arch.resolution)
    info = MemberInfo(space=p.space.name, arch=arch.to_dict(), preprocessing=pre, data=p.cfg.data)
    write_member(directory, info, model)
    t = plan.target
    log(f"exporting {plan.name} ({', '.join(t.export)}) with parity on "
        f"{len(p.data.test)} test images")  # fmt: skip
    tests = TestInputs(p.data.test, pre, p.cfg.evaluation.batch_size)
    artifacts = export_member(model, directory, pre, t.export, tests,
                              precision=t.precision, policy=t.parity_policy)  # fmt: skip
    latency = time_member(plan, model, directory, pre, artifacts)
    log(f"{plan.name}: {latency.measured_on}" + (
        "" if latency.timing is None else
        f": median {latency.timing.median_ms:.4f} ms, p90 {latency.timing.p90_ms:.4f} ms"))  # fmt: skip
    return ShippedMember(plan.name, directory, artifacts, latency)


def time_member(plan: MemberPlan, model: nn.Module, directory: Path, pre: Preprocessing,
                artifacts: dict[str, ArtifactRecord]) -> MemberLatency:  # fmt: skip
    """Time the member as shipped: its artifact for the target's runtime (``model.onnx`` for
    ONNX Runtime), one call at a time, ``MEMBER_PROTOCOL`` calls, the target's threads."""
    t = plan.target
    setting = f"{t.runtime}, {t.threads} thread(s)"
    why = unavailable(t.runtime)
    if why:
        return MemberLatency(None, f"not measured: {t.runtime} cannot run here ({why})", None)
    rt = RUNTIMES[t.runtime]
    artifact, what = None, "the PyTorch model"
    if rt.artifact is not None:
        rec = artifacts.get(rt.artifact)
        if rec is None or rec.path is None:
            what = f"an in-memory {rt.artifact} export (the target ships none)"
        elif rec.status != "passed":
            return MemberLatency(
                None, f"not measured: its {rt.artifact} artifact {rec.status}", None
            )
        else:
            artifact, what = directory / rec.path, rec.path
    batch = 1 if plan.table is None else plan.table.metadata.batch
    with measuring(rt, t.threads, seed=0):
        call = rt.session(Graph(model, pre.input_shape(batch), artifact), t.threads)
        [timing] = time_calls([call], MEMBER_PROTOCOL, random.Random(0))
    return MemberLatency(timing, f"{setting}, {what}, batch {batch}", device_info(rt))


def ship(p: Prepared, evaluated: Evaluated, ev: CachedEvaluation, out_dir: Path,
         log: Callable[[str], None],
         tuned: Mapping[str, nn.Module] | None = None) -> list[ShippedMember]:  # fmt: skip
    """Write, export and time every member of the REG-NAS family under ``out_dir``; a member in
    ``tuned`` (fine-tuned weights by name) ships those instead of the supernet's."""
    tuned = tuned or {}
    return [_ship_member(p, m, ev, out_dir, log, tuned.get(m.plan.name))
            for m in evaluated.family.members]  # fmt: skip
