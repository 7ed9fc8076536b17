"""The elastic supernet, its checkpoints, extraction into static models and BN re-calibration."""

from __future__ import annotations

from famc.space.space import SearchSpace
from famc.supernet.bn import BN_CONVENTIONS, BNConvention, recalibrate
from famc.supernet.checkpoint import load_checkpoint, save_checkpoint
from famc.supernet.mbv3 import ElasticMBV3
from famc.supernet.static import StaticMBV3

__all__ = [
    "BN_CONVENTIONS",
    "BNConvention",
    "ElasticMBV3",
    "StaticMBV3",
    "build_supernet",
    "load_checkpoint",
    "recalibrate",
    "save_checkpoint",
]


def build_supernet(space: SearchSpace) -> ElasticMBV3:
    """A randomly initialised supernet for ``space`` (load weights with ``load_checkpoint``)."""
    return ElasticMBV3(space)
