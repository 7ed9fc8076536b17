"""``train.yaml``: the validated settings of one supernet training run.

Each training method of the seed papers is one optional section; an empty mapping (``sse: {}``)
enables it with its paper's defaults, and every combination composes (see ``famc.train.methods``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from famc.config import BNConventionName, PresetName, resolve, resolve_data
from famc.data import DataConfig
from famc.device import DeviceName, resolve_device
from famc.io import Strict, known, load_yaml
from famc.space import PRESETS, get_space
from famc.train.sampler import SAMPLERS
from famc.train.schedule import SCHEDULES, Phase, check_phases, per_layer_choices

DEVICE_FIX = "set `device: cpu`, or `device: auto` to use a GPU only where there is one"


class OptimizerConfig(Strict):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)


class EvalConfig(Strict):
    num_random: int = Field(3, ge=0)
    batch_size: int = Field(500, gt=0)
    bn_convention: BNConventionName = "ofa"
    truth: str | None = None  # stand-alone truth file: adds ranking figures to the metrics


class AttentiveConfig(Strict):
    """AttentiveNAS (seed 002); the defaults are its best setting, BestUp-3 scored by loss."""

    mode: Literal["bestup", "worstup"] = "bestup"
    k: int = Field(3, ge=2)
    score: Literal["loss", "predictor"] = "loss"
    predictor: str | None = None  # made by `famc predictor`; required with score: predictor
    flops_buckets: int = Field(20, ge=1)
    prior_samples: int = Field(5000, ge=100)
    max_tries: int = Field(100, ge=1)

    @model_validator(mode="after")
    def _predictor_iff_scored_by_it(self) -> AttentiveConfig:
        if (self.score == "predictor") != (self.predictor is not None):
            raise ValueError(
                "`predictor: FILE` (from `famc predictor`) goes with `score: predictor`, and only "
                "with it"
            )
        return self


class LandmarksConfig(Strict):
    """Landmark regularisation (seed 001); λ_max 10 and the cosine increase are its defaults."""

    truth: str  # truth file of the landmarks (the stand-alone benchmark or your own)
    count: int | None = Field(None, ge=2)  # a diverse subset of the file (None: all of it)
    distance: int = Field(0, ge=0)  # min Hamming distance between chosen landmarks
    holdout: float = Field(0.1, gt=0, lt=1)  # share of `train` held out for the ranking loss
    lambda_max: float = Field(10.0, gt=0)
    warmup: float = Field(0.5, ge=0, lt=1)  # share of the steps with λ = 0


class ScheduleConfig(Strict):
    """Which part of the space each step samples: the whole (sandwich), or progressively
    unlocked (ps: OFA's progressive shrinking; aps: per-stage)."""

    kind: Annotated[str, AfterValidator(known(SCHEDULES, "schedule kind"))] = "sandwich"
    phases: list[Phase] | None = Field(None, min_length=1)  # replaces the kind's default


class SSEConfig(Strict):
    """Sub-supernet enhancing (seed 003): groups by the last `stages` stages' depths."""

    stages: int = Field(2, ge=1)
    fraction: float = Field(0.25, gt=0, lt=1)  # final share of the steps spent enhancing


class CPTConfig(Strict):
    """Candidate plasticity training (seed 003): 100 recent, 10 constraints, loss 0.5 / 0.5."""

    pool: int = Field(100, ge=2)
    size: int = Field(10, ge=1)
    neighbours: int = Field(10, ge=1)  # novelty = mean distance to this many nearest
    per_step: int | None = Field(None, ge=1)  # constraint nets trained per step (None: all)
    weight: float = Field(0.5, gt=0, lt=1)  # the constraint set's share of the loss

    @model_validator(mode="after")
    def _sizes(self) -> CPTConfig:
        if self.size >= self.pool:
            raise ValueError(f"size ({self.size}) must be below pool ({self.pool})")
        return self


def _space_name(info: ValidationInfo) -> str | None:
    return info.data.get("space")


def _needs_per_layer(info: ValidationInfo, what: str, fix: str) -> None:
    """Refuse ``what`` (a method defined on OFA's per-layer choice lists: progressive shrinking,
    the attentive FLOPs prior, SSE's depth groups) on a space without them, naming the fix."""
    name = _space_name(info)
    if name is None or per_layer_choices(space := get_space(name)):
        return
    fits = ", ".join(n for n in PRESETS if per_layer_choices(get_space(n)))
    widths = " and elastic widths" if space.widths else ""
    raise ValueError(
        f"{what} needs a space with per-layer choices ({fits}); {name} has per-stage "
        f"choices{widths}: {fix}"
    )


def _needs_sampled(info: ValidationInfo) -> None:
    if info.data.get("num_random") == 0:
        raise ValueError("acts on the sampled sub-networks: set num_random >= 1")


class TrainConfig(Strict):
    """Sandwich-rule training: largest + ``num_random`` sampled + smallest sub-networks per step,
    plus whichever seed-paper methods are enabled."""

    space: PresetName
    data: DataConfig = DataConfig()
    out: str = "runs/train"
    init: str | None = None  # checkpoint to start from
    epochs: int = Field(5, gt=0)
    batch_size: int = Field(256, gt=0)
    warmup_epochs: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    num_random: int = Field(2, ge=0)
    sampler: Annotated[str, AfterValidator(known(SAMPLERS, "sampler"))] = "uniform"
    attentive: AttentiveConfig | None = Field(None, validate_default=True)
    landmarks: LandmarksConfig | None = None
    schedule: ScheduleConfig = Field(ScheduleConfig(), validate_default=True)
    sse: SSEConfig | None = None
    cpt: CPTConfig | None = None
    optimizer: OptimizerConfig = OptimizerConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    threads: int | None = Field(None, gt=0)
    device: DeviceName = "cpu"  # cuda | auto (cuda where available); see famc.device
    max_steps_per_epoch: int | None = Field(None, gt=0)  # tiny CI runs

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str, info: ValidationInfo) -> str:
        if v == "attentive":
            _needs_per_layer(info, "`sampler: attentive`", "use `sampler: uniform`")
        return v

    @field_validator("attentive")
    @classmethod
    def _attentive(cls, v: AttentiveConfig | None, info: ValidationInfo) -> AttentiveConfig | None:
        sampler = info.data.get("sampler")  # None: the sampler was refused, and said so
        if v is not None and sampler not in (None, "attentive"):
            raise ValueError("these settings need `sampler: attentive`; set it or remove them")
        if sampler == "attentive":
            _needs_sampled(info)
        return AttentiveConfig() if v is None and sampler == "attentive" else v

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, v: ScheduleConfig, info: ValidationInfo) -> ScheduleConfig:
        name = _space_name(info)
        if v.kind != "sandwich":
            fix = "use `kind: sandwich`" + (" and remove `phases`" if v.phases else "")
            _needs_per_layer(info, f"`schedule.kind: {v.kind}`", fix)
        if v.phases is not None and name is not None:
            if v.kind == "sandwich":
                raise ValueError("`phases` need kind ps or aps (sandwich samples the whole space)")
            check_phases(get_space(name), v.phases)
        return v

    @field_validator("sse")
    @classmethod
    def _sse(cls, v: SSEConfig | None, info: ValidationInfo) -> SSEConfig | None:
        name = _space_name(info)
        if v is not None:
            _needs_per_layer(info, "`sse`", "remove the `sse` section")
            _needs_sampled(info)
        if v is not None and name is not None and v.stages >= get_space(name).num_stages:
            raise ValueError(
                f"stages must be below the space's {get_space(name).num_stages} stages"
            )
        return v

    @field_validator("cpt")
    @classmethod
    def _cpt(cls, v: CPTConfig | None, info: ValidationInfo) -> CPTConfig | None:
        if v is not None:
            _needs_sampled(info)
        return v


def load_train_config(path: Path | str, device: str | None = None) -> TrainConfig:
    """The config at ``path`` with its paths made absolute; ``device`` (``--device``) replaces the
    config's. A device this host lacks fails here, naming where it was asked for, not at train
    time after the data has loaded."""
    cfg = load_yaml(TrainConfig, path, "train config")
    base = Path(path).resolve().parent
    update: dict[str, Any] = {"init": resolve(base, cfg.init), "data": resolve_data(base, cfg.data),
                              "eval": cfg.eval.model_copy(
                                  update={"truth": resolve(base, cfg.eval.truth)})}  # fmt: skip
    if cfg.attentive is not None:
        update["attentive"] = cfg.attentive.model_copy(
            update={"predictor": resolve(base, cfg.attentive.predictor)}
        )
    if cfg.landmarks is not None:
        update["landmarks"] = cfg.landmarks.model_copy(
            update={"truth": resolve(base, cfg.landmarks.truth)}
        )
    if device is None:
        resolve_device(cfg.device, f"{path}: invalid train config: field `device`", DEVICE_FIX)
    else:
        resolve_device(device, "--device", "pass --device cpu, or --device auto")
        update["device"] = device
    return cfg.model_copy(update=update)
