"""``family.yaml``: the validated description of one family build (the build's first stage).

Relative paths inside a config are resolved against the config file's directory, so a config and the
files it names can move together.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    StringConstraints,
    create_model,
    field_validator,
    model_validator,
)

from famc.cost import COST_MODELS, CostModel
from famc.data import DataConfig
from famc.device import DeviceName
from famc.io import Strict, known, load_yaml
from famc.space import PRESETS
from famc.supernet import BN_CONVENTIONS

MEMBER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MemberName = Annotated[str, StringConstraints(pattern=MEMBER_NAME)]


BNConventionName = Annotated[str, AfterValidator(known(BN_CONVENTIONS, "BN convention"))]
PresetName = Annotated[str, AfterValidator(known(PRESETS, "space preset"))]


class _OneBudget(Strict):
    """Exactly one compute budget, keyed by its ``COST_MODELS`` name."""

    @model_validator(mode="after")
    def _one(self) -> _OneBudget:
        if sum(v is not None for v in self.model_dump().values()) != 1:
            raise ValueError(f"give exactly one of {', '.join(COST_MODELS)}")
        return self

    @property
    def model(self) -> CostModel:
        return COST_MODELS[next(k for k, v in self.model_dump().items() if v is not None)]

    @property
    def value(self) -> float:
        return float(getattr(self, self.model.name))


_budget_fields: dict[str, Any] = {name: (float | None, Field(None, gt=0)) for name in COST_MODELS}
Budget = create_model("Budget", __base__=_OneBudget, **_budget_fields)


class MemberConfig(Strict):
    name: MemberName
    target: str  # path to a targets/*.yaml device description
    budget: Budget | None = None  # type: ignore[valid-type]


class EvaluationConfig(Strict):
    search_images: int | None = Field(None, gt=0)  # first N of the search split (None: all)
    calib_images: int | None = Field(None, gt=0)  # first N of the calibration subset
    batch_size: int = Field(500, gt=0)
    bn_convention: BNConventionName = "ofa"
    cache_dir: str | None = None  # default: $FAMC_CACHE_DIR/evals or ~/.cache/famc/evals
    device: DeviceName = "cpu"  # auto: cuda when the host has one
    amp: bool = False  # float16 autocast for prediction on cuda (parity: README)
    # Ray workers evaluating candidates (None: 1, in this process); --workers overrides it
    workers: int | None = Field(None, ge=1)


class PrescreenConfig(Strict):
    """Draw ``draws`` admissible candidates and evaluate only the best-predicted one."""

    predictor: str  # made by `famc predictor` (for this space, ideally this supernet)
    draws: int = Field(4, ge=2)


class RacingConfig(Strict):
    """Stop a candidate after its first ``images`` search images when its paired reward is ``z``
    standard errors below the weakest parent's (famc.search.race). Survivors, parents and chosen
    members are scored on the whole split, as without racing."""

    images: int = Field(gt=0)  # a multiple of evaluation.batch_size
    z: float = Field(2.33, gt=0)  # one-sided 99 %


class SearchConfig(Strict):
    """REG-NAS defaults: population 100, 20 generations after the initial one, top 25 % parents,
    half mutants: at most 100 + 20 × 75 = 1,600 evaluations per search (a repeated architecture
    is scored once). REG-NAS reports 1,525 = 100 + 19 × 75, counting the initial population as
    its first generation; ``generations: 19`` matches it exactly. A build runs one search per
    member and family (6 for a 3-member family with its baseline), each evaluation a BN
    re-calibration plus a pass over the search images, so the shipped example asks for far fewer
    (population 24 × 5 generations, 114 per search, on the whole search split) to build in
    minutes on 2 CPU cores; raise them for a release.

    ``selection`` picks each member's result from the candidates it evaluated
    (``famc.search.select``): ``reward`` (largest ``λ1·Top1 − λ2·NFR``) or ``epsilon`` (lowest NFR
    within ``epsilon_pt`` points of the best search Top-1 for the budget: the member's own search
    under CAS, or the baseline's member of the same budget when that is higher).
    ``reference: all`` measures NFR against every smaller member (their mean) instead of the one
    below."""

    population: int = Field(100, ge=4)
    generations: int = Field(20, ge=0)
    parent_ratio: float = Field(0.25, gt=0, lt=1)
    mutation_ratio: float = Field(0.5, ge=0, le=1)
    mutate_prob: float = Field(0.1, gt=0, le=1)
    max_tries: int = Field(2000, gt=0)
    lambda1: float = Field(1.0, ge=0)
    lambda2: float = Field(1.0, ge=0)
    reference: Literal["below", "all"] = "below"
    selection: Literal["reward", "epsilon"] = "reward"
    epsilon_pt: float = Field(0.3, ge=0)  # Top-1 points the epsilon rule may give up
    baseline: Literal["r0", "none"] = "r0"
    seed: int = 0
    prescreen: PrescreenConfig | None = None
    racing: RacingConfig | None = None  # None: every candidate sees the whole search split


class FinetuneConfig(Strict):
    """Optional fine-tuning of each member against the (final) member below on the training split
    (REG-NAS §4.4): ``fd-kd`` is cross-entropy plus focal distillation (method notes §5; the
    public reimplementation's α = 1, β = 5), ``ce`` the same run without the reference, as a
    control. The smallest member has nothing below it and ships as searched. Fine-tuned members are
    trained apart, so they no longer share weights literally (CAS still holds for their shapes).
    SGD with Nesterov momentum, cosine decay from ``lr``; BN re-calibrated afterwards as in the
    search."""

    method: Literal["fd-kd", "ce"] = "fd-kd"
    epochs: int = Field(1, ge=1)
    lr: float = Field(0.005, gt=0)
    alpha: float = Field(1.0, ge=0)
    beta: float = Field(5.0, ge=0)
    temperature: float = Field(1.0, gt=0)
    batch_size: int = Field(256, gt=0)
    images: int | None = Field(None, gt=0)  # first N of the training split (None: all)


class GatesConfig(Strict):
    """Release criteria; ``famc build`` exits 3 when one fails (``--no-gates`` skips them)."""

    artifacts: bool = True  # every requested artifact passed, or is unavailable on this host
    max_pairwise_nfr: float | None = Field(None, ge=0)  # %, every smaller→larger pair (test)
    min_top1: float | dict[str, float] | None = None  # %, every member or per member name
    min_export_agreement: float | None = Field(None, ge=0, le=1)  # Top-1 agreement per artifact
    # measured latency ≤ budget × (1 + the target's latency_tolerance_pct / 100)
    latency_within_budget: bool = True
    # |predicted − measured| ≤ latency_tolerance_pct % of measured, per member with a table
    latency_table_error: bool = True
    previous_release: str | None = None  # a release this one updates: its NFR is reported
    max_update_nfr: float | None = Field(None, ge=0)  # %, old → new of every shared member

    @model_validator(mode="after")
    def _update_needs_previous(self) -> GatesConfig:
        if self.max_update_nfr is not None and self.previous_release is None:
            raise ValueError("max_update_nfr needs previous_release: the release to compare with")
        return self


class FamilyConfig(Strict):
    space: PresetName
    supernet: str  # checkpoint (.safetensors or OFA .pth)
    data: DataConfig = DataConfig()
    evaluation: EvaluationConfig = EvaluationConfig()
    search: SearchConfig = SearchConfig()
    members: list[MemberConfig] = Field(min_length=1)
    finetune: FinetuneConfig | None = None  # off unless given
    gates: GatesConfig = GatesConfig()
    out: str = "runs/family"

    @field_validator("members")
    @classmethod
    def _unique(cls, v: list[MemberConfig]) -> list[MemberConfig]:
        names = [m.name for m in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"member names must be unique; repeated: {', '.join(sorted(dup))}")
        return v

    @model_validator(mode="after")
    def _race_aligned(self) -> FamilyConfig:
        race, batch = self.search.racing, self.evaluation.batch_size
        if race is not None and race.images % batch:
            raise ValueError(
                f"search.racing.images ({race.images}) must be a multiple of "
                f"evaluation.batch_size ({batch}): the race's slice is whole batches"
            )
        return self

    @model_validator(mode="after")
    def _race_on_reward(self) -> FamilyConfig:
        if self.search.racing is not None and self.search.selection != "reward":
            raise ValueError(
                f"search.racing stops candidates on the reward, which `search.selection: "
                f"{self.search.selection}` does not rank by: drop `racing` or use "
                "`selection: reward`"
            )
        return self


def resolve(base: Path, value: str | None) -> str | None:
    """``value`` relative to ``base`` unless absolute."""
    if value is None or Path(value).is_absolute():
        return value
    return str(base / value)


def resolve_data(base: Path, data: DataConfig) -> DataConfig:
    return data.model_copy(update={"root": resolve(base, data.root)})


def load_family_config(path: Path | str) -> FamilyConfig:
    cfg = load_yaml(FamilyConfig, path, "family config")
    base = Path(path).resolve().parent
    screen = cfg.search.prescreen
    if screen is not None:
        screen = screen.model_copy(update={"predictor": resolve(base, screen.predictor)})
    return cfg.model_copy(
        update={
            "search": cfg.search.model_copy(update={"prescreen": screen}),
            "supernet": resolve(base, cfg.supernet),
            "data": resolve_data(base, cfg.data),
            "gates": cfg.gates.model_copy(
                update={"previous_release": resolve(base, cfg.gates.previous_release)}
            ),
            "members": [
                m.model_copy(update={"target": resolve(base, m.target)}) for m in cfg.members
            ],
        }
    )
