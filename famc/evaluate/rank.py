"""Ranking quality: does a supernet order architectures the way stand-alone training does?

Every search trusts the supernet's ordering, so it is measured against ground truth: a *truth file*
of architectures trained stand-alone (``bench/standalone_truth.py`` writes one; any JSON with
``space`` and ``results: [{arch, top1}, ...]`` will do, extra keys are ignored). Each architecture
is scored with inherited weights after BN re-calibration on the split the truth was measured on
(``test``) and the two accuracy lists are correlated (Kendall τ, Spearman ρ, Pearson r, top-5
overlap). Landmarks a supernet was trained with are excluded, as the landmark paper does: their
order was taught, not predicted.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from famc.data import DataSplits
from famc.errors import FamcError
from famc.evaluate.engine import Evaluator, load_trained
from famc.io import first_line, load_yaml
from famc.metrics import Ranking, ranking, top1
from famc.progress import Reporter
from famc.space import Arch, ArchRecord, SearchSpace, flops, get_space
from famc.supernet.checkpoint import read_state_dict

#: Checkpoint metadata key listing the landmark architectures a supernet was trained with.
LANDMARKS_KEY = "landmarks"


class TruthResult(BaseModel):
    """One stand-alone result; the other keys the bench writes (log, correct, …) are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    arch: ArchRecord
    top1: float = Field(ge=0, le=100)


class TruthFile(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    space: str
    dataset: str | None = None
    split: Literal["test"] = "test"
    results: list[TruthResult] = Field(min_length=2)


class Truth:
    """A validated truth file: architectures of one space and their stand-alone Top-1."""

    def __init__(self, path: Path | str, space: SearchSpace) -> None:
        self.path = str(path)
        doc = load_yaml(TruthFile, path, "truth file")  # YAML's loader reads JSON too
        if doc.space != space.name:
            raise FamcError(f"{path}: truth for space {doc.space!r}, not {space.name!r}")
        self.dataset = doc.dataset
        self.archs: list[Arch] = [space.arch_from_dict(r.arch) for r in doc.results]
        self.top1 = [r.top1 for r in doc.results]
        if len(set(self.archs)) != len(self.archs):
            raise FamcError(f"{path}: an architecture appears twice in `results`; keep one")


class RankedArch(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    arch: ArchRecord
    flops: int
    standalone: float
    supernet: float
    landmark: bool


class RankReport(Ranking):
    """The ranking figures over the non-landmark architectures, and every architecture's pair."""

    truth: str
    split: Literal["test"] = "test"
    landmarks_excluded: int
    archs: list[RankedArch]


def rank_supernet(
    ev: Evaluator,
    space: SearchSpace,
    truth: Truth,
    data: DataSplits,
    *,
    exclude: Collection[Arch] = (),
    reporter: Reporter | None = None,
) -> RankReport:
    """Score every truth architecture with the supernet behind ``ev`` and correlate."""
    rows: list[RankedArch] = []
    with (reporter or Reporter("off")).task("rank", len(truth.archs)) as task:
        for arch, acc in zip(truth.archs, truth.top1, strict=True):
            rows.append(
                RankedArch(
                    arch=ArchRecord(**arch.to_dict()),
                    flops=flops(space, arch),
                    standalone=acc,
                    supernet=round(top1(ev.correct(arch, data.test)), 3),
                    landmark=arch in exclude,
                )  # fmt: skip
            )
            task.advance()
    kept = [r for r in rows if not r.landmark]
    if len(kept) < 2:
        raise FamcError(
            f"{truth.path}: only {len(kept)} architecture(s) left after excluding the "
            f"{len(rows) - len(kept)} landmark(s) the supernet was trained with; add results"
        )
    figures = ranking([r.supernet for r in kept], [r.standalone for r in kept])
    return RankReport(**figures.model_dump(), truth=truth.path,
                      landmarks_excluded=len(rows) - len(kept), archs=rows)  # fmt: skip


def rank_checkpoint(supernet: Path, truth_path: Path, reporter: Reporter) -> RankReport:
    """``famc rank``: the checkpoint is evaluated with the data and BN settings it was trained
    with; the landmarks it was trained with (stored in its metadata) are excluded."""
    meta = read_state_dict(supernet)[1]
    space = get_space(meta.get("space", ""))
    truth = Truth(truth_path, space)
    trained = load_trained(supernet, truth.dataset)
    try:
        landmarks = [space.arch_from_dict(a) for a in json.loads(meta.get(LANDMARKS_KEY, "[]"))]
    except (ValueError, TypeError, KeyError, AttributeError, FamcError) as exc:
        raise FamcError(f"{supernet}: its metadata `{LANDMARKS_KEY}` is not a list of "
                        f"{space.name} architectures ({first_line(exc)}); use a checkpoint "
                        f"`famc train` wrote") from None  # fmt: skip
    return rank_supernet(trained.evaluator, space, truth, trained.data, exclude=landmarks,
                         reporter=reporter)  # fmt: skip
