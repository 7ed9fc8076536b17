"""``train.yaml``: the validated settings of one supernet training run."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field

from famc.config import BNConventionName, PresetName, resolve, resolve_data
from famc.data import DataConfig
from famc.io import Strict, known, load_yaml
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
    bn_convention: BNConventionName = "ofa"


class TrainConfig(Strict):
    """Sandwich-rule training: largest + ``num_random`` sampled + smallest sub-networks per step."""

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
    optimizer: OptimizerConfig = OptimizerConfig()
    eval: EvalConfig = EvalConfig()
    seed: int = 0
    threads: int | None = Field(None, gt=0)
    max_steps_per_epoch: int | None = Field(None, gt=0)  # tiny CI runs


def load_train_config(path: Path | str) -> TrainConfig:
    cfg = load_yaml(TrainConfig, path, "train config")
    base = Path(path).resolve().parent
    return cfg.model_copy(
        update={"init": resolve(base, cfg.init), "data": resolve_data(base, cfg.data)}
    )
