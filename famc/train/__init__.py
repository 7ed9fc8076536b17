"""Supernet training: sandwich rule, in-place distillation, pluggable sub-network samplers."""

from famc.train.config import TrainConfig, load_train_config
from famc.train.loop import train
from famc.train.sampler import SAMPLERS, Sampler, UniformSampler

__all__ = ["SAMPLERS", "Sampler", "TrainConfig", "UniformSampler", "load_train_config", "train"]
