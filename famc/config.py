"""``family.yaml``: the validated description of one family build, plus shared YAML helpers.

Relative paths inside a config are resolved against the config file's directory, so a config and the
files it names can move together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from famc.data import DATASETS
from famc.errors import FamcError
from famc.space import PRESETS
from famc.supernet import BN_CONVENTIONS


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(Strict):
    name: str = "fashion-mnist"
    root: str | None = None
    search_size: int | None = None
    calib_size: int | None = None
    seed: int = 0
    image_size: int | None = None
    channels: int | None = None

    @field_validator("name")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in DATASETS:
            raise ValueError(f"unknown dataset {v!r}; choose one of {', '.join(DATASETS)}")
        return v


def bn_convention(v: str) -> str:
    if v not in BN_CONVENTIONS:
        raise ValueError(f"unknown BN convention {v!r}; choose one of {', '.join(BN_CONVENTIONS)}")
    return v


class Budget(Strict):
    """Exactly one compute budget: predicted latency (needs a table), MFLOPs or M parameters."""

    latency_ms: float | None = Field(None, gt=0)
    mflops: float | None = Field(None, gt=0)
    mparams: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Budget:
        if sum(v is not None for v in (self.latency_ms, self.mflops, self.mparams)) != 1:
            raise ValueError("give exactly one of latency_ms, mflops, mparams")
        return self

    @property
    def kind(self) -> Literal["latency_ms", "mflops", "mparams"]:
        if self.latency_ms is not None:
            return "latency_ms"
        return "mflops" if self.mflops is not None else "mparams"

    @property
    def value(self) -> float:
        v = getattr(self, self.kind)
        assert v is not None
        return float(v)


class MemberConfig(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    target: str  # path to a targets/*.yaml device description
    budget: Budget | None = None  # overrides the target's own budget


class EvaluationConfig(Strict):
    search_images: int | None = Field(None, gt=0)  # first N of the search split (None: all)
    calib_images: int | None = Field(None, gt=0)  # first N of the calibration subset
    batch_size: int = Field(500, gt=0)
    bn_convention: str = "ofa"
    cache_dir: str | None = None  # default: $FAMC_CACHE_DIR/evals or ~/.cache/famc/evals

    @field_validator("bn_convention")
    @classmethod
    def _bn(cls, v: str) -> str:
        return bn_convention(v)


class SearchConfig(Strict):
    """REG-NAS defaults: 20 generations × population 100, top 25 % parents, half mutants."""

    population: int = Field(100, ge=4)
    generations: int = Field(20, ge=0)
    parent_ratio: float = Field(0.25, gt=0, lt=1)
    mutation_ratio: float = Field(0.5, ge=0, le=1)
    mutate_prob: float = Field(0.1, gt=0, le=1)
    max_tries: int = Field(2000, gt=0)
    lambda1: float = Field(1.0, ge=0)
    lambda2: float = Field(1.0, ge=0)
    reference: Literal["below", "all"] = "below"
    baseline: Literal["r0", "none"] = "r0"
    seed: int = 0


class GatesConfig(Strict):
    """Release criteria; ``famc build`` exits 3 when one fails (``--no-gates`` skips them)."""

    max_pairwise_nfr: float | None = Field(None, ge=0)  # %, every smaller→larger pair (test)
    min_top1: float | dict[str, float] | None = None  # %, every member or per member name
    min_export_agreement: float | None = Field(None, ge=0, le=1)  # Top-1 agreement per artifact
    latency_within_budget: bool = False  # measured latency ≤ budget × (1 + tolerance)
    latency_tolerance_pct: float = Field(10.0, ge=0)


class FamilyConfig(Strict):
    space: str
    supernet: str  # checkpoint (.safetensors or OFA .pth)
    data: DataConfig = DataConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search: SearchConfig = SearchConfig()
    members: list[MemberConfig] = Field(min_length=1)
    gates: GatesConfig = GatesConfig()
    out: str = "runs/family"

    @field_validator("space")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown space preset {v!r}; choose one of {', '.join(PRESETS)}")
        return v

    @field_validator("members")
    @classmethod
    def _unique(cls, v: list[MemberConfig]) -> list[MemberConfig]:
        names = [m.name for m in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"member names must be unique; repeated: {', '.join(sorted(dup))}")
        return v


def describe_validation_error(path: Path | str, exc: ValidationError) -> str:
    """One line per problem: file, dotted field path, what is wrong."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing: add it"
        problems.append(f"{path}: field `{field}`: {msg}")
    return "\n".join(problems)


def read_yaml(path: Path | str) -> dict[str, Any]:
    """A YAML mapping, or a one-line error naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FamcError(f"config file {path} not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise FamcError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise FamcError(f"{path}: expected a mapping of settings at the top level")
    return data


def resolve(base: Path, value: str | None) -> str | None:
    """``value`` relative to ``base`` unless absolute."""
    if value is None or Path(value).is_absolute():
        return value
    return str(base / value)


def load_family_config(path: Path | str) -> FamilyConfig:
    data = read_yaml(path)
    try:
        cfg = FamilyConfig.model_validate(data)
    except ValidationError as exc:
        raise FamcError(describe_validation_error(path, exc)) from None
    base = Path(path).resolve().parent
    return cfg.model_copy(
        update={
            "supernet": resolve(base, cfg.supernet),
            "data": cfg.data.model_copy(update={"root": resolve(base, cfg.data.root)}),
            "members": [
                m.model_copy(update={"target": resolve(base, m.target)}) for m in cfg.members
            ],
        }
    )
