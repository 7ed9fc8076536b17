"""The elastic supernet, its checkpoints, extraction into static models and BN re-calibration."""

from __future__ import annotations

from famc.space.space import SearchSpace
from famc.supernet.bn import BN_CONVENTIONS, BNConvention, calibrating, recalibrate
from famc.supernet.checkpoint import load_checkpoint, save_checkpoint
from famc.supernet.elastic import BLOCKS
from famc.supernet.network import ElasticNet, static_model
from famc.supernet.static import StaticNet, fold_bn, with_memory_format

__all__ = [
    "BLOCKS",
    "BN_CONVENTIONS",
    "BNConvention",
    "ElasticNet",
    "StaticNet",
    "build_supernet",
    "calibrating",
    "fold_bn",
    "load_checkpoint",
    "recalibrate",
    "save_checkpoint",
    "static_model",
    "with_memory_format",
]


def build_supernet(space: SearchSpace) -> ElasticNet:
    """A randomly initialised supernet for ``space`` (load weights with ``load_checkpoint``)."""
    return ElasticNet(space)
