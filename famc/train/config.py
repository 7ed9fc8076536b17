"""``train.yaml``: the validated settings of one supernet training run."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError, field_validator

from famc.config import (
    DataConfig,
    Strict,
    bn_convention,
    describe_validation_error,
    read_yaml,
    resolve,
)
from famc.errors import FamcError
from famc.space import PRESETS
from famc.train.sampler import SAMPLERS


class OptimizerConfig(Strict):
    name: Literal["sgd"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(3e-5, ge=0)


class EvalConfig(Strict):
    num_random: int = Field(3, ge=0)
    batch_size: int = Field(500, gt=0)
    bn_convention: str = "ofa"

    @field_validator("bn_convention")
    @classmethod
    def _known(cls, v: str) -> str:
        return bn_convention(v)


class TrainConfig(Strict):
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


def load_train_config(path: Path | str) -> TrainConfig:
    data = read_yaml(path)
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        raise FamcError(describe_validation_error(path, exc)) from None
    base = Path(path).resolve().parent
    return cfg.model_copy(
        update={
            "init": resolve(base, cfg.init),
            "data": cfg.data.model_copy(update={"root": resolve(base, cfg.data.root)}),
        }
    )
