"""``train.yaml``: the validated settings of one supernet training run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from famc.data import DATASETS
from famc.errors import FamcError
from famc.space import PRESETS
from famc.supernet import BN_CONVENTIONS
from famc.train.sampler import SAMPLERS


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
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


class OptimizerConfig(_Strict):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)


class EvalConfig(_Strict):
    num_random: int = Field(3, ge=0)
    batch_size: int = Field(500, gt=0)
    bn_convention: str = "ofa"

    @field_validator("bn_convention")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in BN_CONVENTIONS:
            raise ValueError(f"unknown BN convention {v!r}; choose one of {BN_CONVENTIONS}")
        return v


class TrainConfig(_Strict):
    """Sandwich-rule training: largest + ``num_random`` sampled + smallest sub-networks per step."""

    space: str
    data: DataConfig = DataConfig()
    out: str = "runs/train"
    init: str | None = None  # checkpoint to start from
    epochs: int = Field(5, gt=0)
    batch_size: int = Field(256, gt=0)
    warmup_epochs: float = Field(0.5, ge=0)
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    num_random: int = Field(2, ge=0)
    sampler: str = "uniform"
    optimizer: OptimizerConfig = OptimizerConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    threads: int | None = Field(None, gt=0)
    max_steps_per_epoch: int | None = Field(None, gt=0)  # tiny CI runs

    @field_validator("space")
    @classmethod
    def _preset(cls, v: str) -> str:
        if v not in PRESETS:
            raise ValueError(f"unknown space preset {v!r}; choose one of {', '.join(PRESETS)}")
        return v

    @field_validator("sampler")
    @classmethod
    def _sampler(cls, v: str) -> str:
        if v not in SAMPLERS:
            raise ValueError(f"unknown sampler {v!r}; choose one of {', '.join(SAMPLERS)}")
        return v


def describe_validation_error(path: Path | str, exc: ValidationError) -> str:
    """One line per problem: file, dotted field path, what is wrong."""
    problems = []
    for err in exc.errors():
        field = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        problems.append(f"{path}: field `{field}`: {msg}")
    return "\n".join(problems)


def read_yaml(path: Path | str) -> dict:
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


def load_train_config(path: Path | str) -> TrainConfig:
    data = read_yaml(path)
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise FamcError(describe_validation_error(path, exc)) from None
    base = Path(path).parent
    updates: dict[str, object] = {}
    # relative paths in a config are relative to the config file, so examples run from anywhere
    if cfg.init is not None and not Path(cfg.init).is_absolute():
        updates["init"] = str(base / cfg.init)
    if cfg.data.root is not None and not Path(cfg.data.root).is_absolute():
        updates["data"] = cfg.data.model_copy(update={"root": str(base / cfg.data.root)})
    return cfg.model_copy(update=updates)
