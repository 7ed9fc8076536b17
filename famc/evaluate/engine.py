"""Evaluating an architecture: extract → BN re-calibrate → predict, one boolean vector per split.

Every accuracy/flip metric famc reports derives from these correctness vectors, so a model is run
once per split and never again. Inputs are prepared once per (split, resolution) and reused across
architectures: resizing and normalising is otherwise a large share of evaluation time on CPU.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from famc.data import DataConfig, DataSplits, ImageSet, to_input
from famc.errors import FamcError
from famc.io import first_line
from famc.search.race import Race
from famc.space import Arch, SearchSpace, get_space
from famc.supernet import (
    BNConvention,
    ElasticNet,
    build_supernet,
    fold_bn,
    load_checkpoint,
    recalibrate,
    with_memory_format,
)
from famc.supernet.bn import BN_CONVENTIONS
from famc.supernet.checkpoint import read_state_dict


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
    def logits(self, model: nn.Module, images: ImageSet, resolution: int, start: int = 0,
               stop: int | None = None) -> torch.Tensor:  # fmt: skip
        """Logits of samples ``start:stop`` (batch-aligned), batched as for the whole set, so a
        vector assembled from slices equals the one-pass vector exactly."""
        stop = len(images) if stop is None else stop
        b = self.batch_size
        if start % b or (stop % b and stop != len(images)):
            raise ValueError(f"slice {start}:{stop} is not aligned to batches of {b}")
        model.eval()
        batches = self.inputs(images, resolution)[start // b : -(-stop // b)]
        return torch.cat([model(x) for x in batches])

    def correct(self, arch: Arch, images: ImageSet, race: Race | None = None,
                done: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Boolean vector: which samples of ``images`` the calibrated ``arch`` classifies right.

        With a ``race`` the first ``race.images`` are judged before the rest is computed, and a
        stopped candidate's vector is that prefix. ``done`` is a prefix computed before (from the
        cache): only the remainder is predicted."""
        n = len(images)
        have = torch.zeros(0, dtype=torch.bool) if done is None else done
        stop = n if race is None or have.numel() >= race.images else min(race.images, n)
        model = fold_bn(self.model(arch))

        def run(a: int, b: int) -> torch.Tensor:
            return self.logits(model, images, arch.resolution, a, b).argmax(1) == images.labels[a:b]

        vec = torch.cat([have, run(have.numel(), stop)])
        if stop < n and (race is None or race.keep_going(vec)):
            vec = torch.cat([vec, run(stop, n)])
        return vec


@dataclass(frozen=True)
class TrainedSupernet:
    """A famc checkpoint, ready to evaluate with the data and BN settings it was trained with."""

    space: SearchSpace
    evaluator: Evaluator
    data: DataSplits
    metadata: dict[str, str]


def _trained_settings(
    path: Path, meta: dict[str, str]
) -> tuple[DataConfig | None, int, BNConvention]:
    """The data split and evaluation settings a famc checkpoint's metadata records (its training
    config), checked: a damaged record is one error line, not a traceback."""
    try:
        config = json.loads(meta.get("config", "{}"))
        data = DataConfig.model_validate(config["data"]) if "data" in config else None
        evaluation = config.get("eval", {})
        batch_size, bn = evaluation.get("batch_size", 500), evaluation.get("bn_convention", "ofa")
        if not isinstance(batch_size, int) or batch_size < 1 or bn not in BN_CONVENTIONS:
            raise ValueError(f"eval: batch_size {batch_size!r}, bn_convention {bn!r}")
    except (ValueError, TypeError, AttributeError) as exc:  # pydantic's ValidationError included
        raise FamcError(f"{path}: its metadata `config` is not a famc training config "
                        f"({first_line(exc)}); use a checkpoint `famc train` wrote") from None  # fmt: skip
    return data, batch_size, bn


def load_trained(path: Path, dataset: str | None = None) -> TrainedSupernet:
    """Load a famc checkpoint with its training config's data and evaluation settings (famc
    checkpoints store the config); without one, ``dataset`` with the default split."""
    meta = read_state_dict(path)[1]
    if "space" not in meta:
        raise FamcError(f"{path}: no `space` in its metadata; only famc checkpoints qualify")
    space = get_space(meta["space"])
    data_cfg, batch_size, bn = _trained_settings(path, meta)
    if data_cfg is None:
        data_cfg = DataConfig(name=dataset or "fashion-mnist")
    if dataset is not None and data_cfg.name != dataset:
        raise FamcError(
            f"{path} was trained on {data_cfg.name!r}, not {dataset!r}: compare it with "
            f"results on its own dataset"
        )
    data = data_cfg.load()
    net = build_supernet(space)
    load_checkpoint(net, path)
    ev = Evaluator(net.eval(), data.calib, data.mean, data.std, batch_size=batch_size,
                   bn_convention=bn)  # fmt: skip
    return TrainedSupernet(space, ev, data, meta)
