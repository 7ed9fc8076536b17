"""``family.json``: the typed release manifest, declared field by field and built once.

Every object forbids unknown keys (``extra="forbid"``), and the JSON Schema in
``schemas/family.schema.json`` is generated from these models (``python -m famc.report.release``),
with maps keyed by member names or paths written as ``patternProperties`` so that the schema, too,
forbids unknown keys everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from famc.config import Budget, EvaluationConfig, FinetuneConfig, MemberName, SearchConfig
from famc.evaluate.stage import FamilySummary
from famc.export import ArtifactRecord, Artifacts, artifact_records
from famc.export.records import FileRecord
from famc.latency.runtimes import Device
from famc.metrics import Pair
from famc.prepare import Inputs
from famc.space import ArchRecord

SCHEMA_VERSION = 2
FAMILY_JSON = "family.json"
DIGEST_NAME = f"{FAMILY_JSON}.sha256"


def digest_line(family_json: Path) -> str:
    """``sha256sum``-compatible line recording ``family.json``'s digest, written beside it."""
    return f"{hashlib.sha256(family_json.read_bytes()).hexdigest()}  {FAMILY_JSON}\n"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FamilyPreprocessing(_Model):
    """Everything a consumer needs to feed a member: resize (and crop, per ``crop_ratio``) the
    image to the member's resolution (bilinear), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, NCHW."""

    channels: int
    mean: list[float]
    std: list[float]
    resize: str = "bilinear"
    crop_ratio: float | None = Field(
        None,
        description="null: resize the whole image to the "
        "resolution; r: resize its shorter side to ceil(resolution "
        "/ r), then centre-crop the resolution (ImageNet evaluation)",
    )
    layout: str = "NCHW"
    resolution: dict[MemberName, int] = Field(description="input resolution per member name")
    class_names: list[str]


class LatencyMs(_Model):
    """One definition throughout: the median wall time of one inference call of the shipped
    artifact on the target's runtime and threads (latency_tables/README.md)."""

    predicted: float | None = Field(description="the target's latency table (ms)")
    budget: float | None = Field(description="the member's latency budget (ms), if it has one")
    measured: float | None = Field(None, description="median of the shipped artifact here (ms)")
    measured_p90: float | None = Field(None, description="90th percentile of the same calls (ms)")
    calls: int | None = Field(None, description="timed calls behind `measured`")
    error_pct: float | None = Field(None, description="(predicted - measured) / measured, in %")
    tolerance_pct: float = Field(description="the target's tolerance for budget and table error")
    measured_on: str | None = Field(None, description="runtime, threads and artifact timed, or "
                                    "why nothing was")  # fmt: skip
    host: Device | None = Field(None, description="the host that measured")
    table_host: Device | None = Field(
        None, description="the host the table's predictions were validated on"
    )
    note: str | None = Field(None, description="e.g. that this host is not the table's")


class FrontPoint(_Model):
    """One candidate of a member's search, scored on the search split."""

    arch: ArchRecord
    top1: float = Field(description="search Top-1 (%)")
    nfr: float = Field(description="search NFR (%) against the reference member(s)")
    cost: float = Field(description="in the member's cost model's units")
    generation: int


class SearchFront(_Model):
    """A member's search as two objectives (REG-NAS Fig. 4b): the candidates no other beats on both
    search Top-1 and NFR, its two ends (the paragons) and the one the selection rule chose."""

    selection: str = Field(description="the rule that chose (`search.selection`)")
    evaluated: int = Field(
        description="candidates fully evaluated under the member's budget and CAS (racing's "
        "stopped ones are left out of the front and the paragons)"
    )
    front: list[FrontPoint] = Field(description="the Pareto front, lowest NFR first")
    top1_paragon: FrontPoint = Field(description="the best search Top-1 (R0's pick)")
    nfr_paragon: FrontPoint = Field(description="the lowest search NFR (R1's pick)")
    chosen: FrontPoint


class MemberRecord(_Model):
    name: MemberName
    target: str
    arch: ArchRecord
    contains: str | None = Field(description="name of the member below, whose weights it holds")
    top1: float = Field(description="Top-1 (%) on the held-out test split")
    search_top1: float = Field(description="Top-1 (%) on the search-validation split")
    latency_ms: LatencyMs
    budget: Budget = Field(description="the budget it was searched under, by cost model")  # type: ignore[valid-type]
    flops: int = Field(description="multiply-accumulates per image")
    params: int
    path: str | None = Field(description="member directory, relative to family.json")
    artifacts: Artifacts | None = Field(None, description="exports, paths relative to family.json")  # type: ignore[valid-type]
    files: list[FileRecord] | None = Field(
        None, description="every file of the member directory (sha256, size), for famc verify"
    )
    search_front: SearchFront | None = Field(
        None, description="its search's Top-1/NFR front (null without a member below)"
    )

    def artifact_list(self) -> list[ArtifactRecord]:
        """The member's export records, in ``FORMATS`` order (none for a baseline member)."""
        return [] if self.artifacts is None else artifact_records(self.artifacts)


class FamilyBlock(_Model):
    members: list[MemberRecord]
    pairwise: list[Pair]


class FinetuneMember(_Model):
    """One member before and after fine-tuning (test split)."""

    name: MemberName
    reference: MemberName | None = Field(
        description="the member it was tuned against (null: the smallest, shipped as searched)"
    )
    top1_before: float
    top1_after: float
    nfr_before: float | None = Field(description="NFR (%) against `reference`, before")
    nfr_after: float | None = Field(description="NFR (%) against `reference`'s final model, after")


class FinetuneRecord(FinetuneConfig):
    """The fine-tuning settings and what they changed. Fine-tuned members were trained apart, so
    they no longer share weights literally (``weights_shared`` is false); their architectures still
    nest under CAS."""

    train_images: int = Field(description="training images per epoch")
    seconds: float
    weights_shared: bool = Field(description="whether a member's weights are a slice of the next's")
    members: list[FinetuneMember]
    pairwise_before: list[Pair] = Field(description="test-split flips of every pair, before")
    summary_before: FamilySummary


class Evaluations(_Model):
    run: int = Field(description="architectures evaluated by this build")
    cache_hits: int = Field(description="correctness vectors found in the evaluation cache")


class Summary(_Model):
    family: FamilySummary
    baseline: FamilySummary | None = None
    nfr_reduction_pct: float | None = None
    top1_cost: float | None = None
    build_seconds: float
    evaluations: Evaluations


class SearchRecord(SearchConfig):
    """The search settings, with the evaluation settings and split sizes it ranked on."""

    evaluation: EvaluationConfig
    search_images: int
    calib_images: int
    split_overlap_allowed: bool = Field(
        False, description="ranked on images the supernet was trained on (--allow-split-overlap)"
    )


class Environment(_Model):
    """The software and host a release was made with (``null``: not installed here)."""

    famc: str
    python: str
    torch: str
    onnx: str | None
    onnxruntime: str | None
    coremltools: str | None
    tensorrt: str | None
    cpu: str
    cores: int
    torch_threads: int
    thread_env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Z_]+$")], str] = Field(
        description="thread-count environment variables that were set (OMP_NUM_THREADS, ...)"
    )


class MemberUpdate(_Model):
    """One member from a previous release to this one (``famc diff``): Top-1, flips old → new (%
    of the test split) and latency."""

    name: str
    top1_old: float
    top1_new: float
    nfr: float
    pfr: float
    latency_old_ms: float | None
    latency_new_ms: float | None
    latency_change_pct: float | None


class GateResult(_Model):
    name: str
    passed: bool
    detail: str


class FamilyManifest(_Model):
    """``family.json``: what was built, from what, and how consistent it is."""

    schema_version: int = SCHEMA_VERSION
    famc_version: str
    created: str
    space: str
    preprocessing: FamilyPreprocessing
    members: list[MemberRecord]
    pairwise: list[Pair] = Field(description="test-split flips of every smaller→larger pair")
    baseline: FamilyBlock | None = Field(
        None, description="the family plain NAS finds (R0 per member, no CAS), for comparison"
    )
    summary: Summary
    search: SearchRecord
    inputs: Inputs
    environment: Environment
    finetune: FinetuneRecord | None = Field(
        None,
        description="fine-tuning against the member below; `members` and `pairwise` are after it",
    )
    update: list[MemberUpdate] | None = Field(
        None, description="each shared member against gates.previous_release (famc diff)"
    )
    gates: list[GateResult] | None = Field(None, description="null when gates were skipped")


class _ClosedMaps(GenerateJsonSchema):
    """Maps become ``patternProperties`` (their key rule) with ``additionalProperties: false``."""

    def dict_schema(self, schema: core_schema.DictSchema) -> JsonSchemaValue:
        out = super().dict_schema(schema)  # keys with a pattern come as patternProperties
        values = out.pop("additionalProperties", {})
        out.pop("propertyNames", None)
        out.setdefault("patternProperties", {"^.+$": values})
        return {**out, "additionalProperties": False}


def schema() -> dict[str, Any]:
    return FamilyManifest.model_json_schema(schema_generator=_ClosedMaps)


if __name__ == "__main__":  # python -m famc.report.release > schemas/family.schema.json
    print(json.dumps(schema(), indent=2))
