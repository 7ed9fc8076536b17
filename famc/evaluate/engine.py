"""Evaluating an architecture: extract → BN re-calibrate → predict, one boolean vector per split.

Every accuracy/flip metric famc reports derives from these correctness vectors, so a model is run
once per split and never again. Inputs are prepared once per (split, resolution) and reused across
architectures: resizing and normalising is otherwise a large share of evaluation time on CPU.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from famc.data import ImageSet, to_input
from famc.space import Arch
from famc.supernet import BNConvention, ElasticNet, fold_bn, recalibrate, with_memory_format


class Evaluator:
    """Evaluates architectures of one supernet on fixed calibration data."""

    def __init__(
        self,
        net: ElasticNet,
        calib: ImageSet,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        batch_size: int = 500,
        bn_convention: BNConvention = "ofa",
    ) -> None:
        self.net = net
        self.calib = calib
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = batch_size
        self.bn_convention: BNConvention = bn_convention
        self._prepared: dict[tuple[int, int], list[torch.Tensor]] = {}

    def inputs(self, images: ImageSet, resolution: int) -> list[torch.Tensor]:
        """Preprocessed channels-last batches of ``images`` at ``resolution`` (cached)."""
        key = (id(images), resolution)
        if key not in self._prepared:
            self._prepared[key] = [
                to_input(x, resolution, self.mean, self.std, channels_last=True)
                for x, _ in images.batches(self.batch_size)
            ]
        return self._prepared[key]

    def model(self, arch: Arch) -> nn.Module:
        """The static sub-network with BN statistics re-estimated on the calibration subset."""
        sub = with_memory_format(self.net.extract(arch), torch.channels_last)
        return recalibrate(sub, self.inputs(self.calib, arch.resolution), self.bn_convention)

    @torch.inference_mode()
    def logits(self, model: nn.Module, images: ImageSet, resolution: int) -> torch.Tensor:
        model.eval()
        return torch.cat([model(x) for x in self.inputs(images, resolution)])

    def correct(self, arch: Arch, images: ImageSet) -> torch.Tensor:
        """Boolean vector: which samples of ``images`` the calibrated ``arch`` classifies right."""
        logits = self.logits(fold_bn(self.model(arch)), images, arch.resolution)
        return logits.argmax(1) == images.labels
