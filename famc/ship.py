"""Build stage 4, ship: each REG-NAS member's weights, its exported artifacts and its latency.

Members are written into the staging directory the build renames into place when complete.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from famc.data import to_input
from famc.evaluate.cache import CachedEvaluation
from famc.evaluate.stage import Evaluated, MemberResult
from famc.export import ArtifactRecord, Preprocessing, export_member
from famc.latency.profile import measure_archs
from famc.latency.runtimes import check_runtime
from famc.member import MemberInfo, write_member
from famc.prepare import Prepared
from famc.supernet import with_memory_format


@dataclass(frozen=True)
class ShippedMember:
    name: str
    directory: Path
    artifacts: dict[str, ArtifactRecord]
    measured_ms: float
    measured_on: str


def preprocessing(p: Prepared, resolution: int) -> Preprocessing:
    """What a consumer must feed a member of this build at ``resolution``."""
    d = p.data
    return Preprocessing(resolution=resolution, channels=d.channels, mean=d.mean, std=d.std,
                         class_names=d.classes)  # fmt: skip


def test_batches(p: Prepared, resolution: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The full test split, preprocessed exactly as family.json tells consumers to."""
    return [
        (to_input(x, resolution, p.data.mean, p.data.std, channels_last=False), y)
        for x, y in p.data.test.batches(p.cfg.evaluation.batch_size)
    ]


def _ship_member(p: Prepared, m: MemberResult, ev: CachedEvaluation, out_dir: Path,
                 log: Callable[[str], None]) -> ShippedMember:  # fmt: skip
    arch, plan = m.found.best.arch, m.plan
    directory = out_dir / "members" / plan.name
    model = with_memory_format(ev.evaluator.model(arch), torch.contiguous_format)
    pre = preprocessing(p, arch.resolution)
    info = MemberInfo(space=p.space.name, arch=arch.to_dict(), preprocessing=pre, data=p.cfg.data)
    write_member(directory, info, model)
    t = plan.target
    log(f"exporting {plan.name} ({', '.join(t.export)}) with parity on "
        f"{len(p.data.test)} test images")  # fmt: skip
    artifacts = export_member(model, directory, pre, t.export, test_batches(p, arch.resolution),
                              precision=t.precision, policy=t.parity_policy)  # fmt: skip
    measured = measure_archs(p.space, [arch], check_runtime(t.runtime), t.threads, batch=1)[0]
    return ShippedMember(plan.name, directory, artifacts, measured,
                         f"{t.runtime}, {t.threads} thread(s), this host")  # fmt: skip


def ship(p: Prepared, evaluated: Evaluated, ev: CachedEvaluation, out_dir: Path,
         log: Callable[[str], None]) -> list[ShippedMember]:  # fmt: skip
    """Write, export and time every member of the REG-NAS family under ``out_dir``."""
    return [_ship_member(p, m, ev, out_dir, log) for m in evaluated.family.members]
