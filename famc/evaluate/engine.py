"""Evaluating an architecture: extract → BN re-calibrate → predict, one boolean vector per split.

Every accuracy/flip metric famc reports derives from these correctness vectors, so a model is run
once per split and never again. Inputs are prepared once per (split, resolution) and reused across
architectures: resizing and normalising is otherwise a large share of evaluation time on CPU.
They are prepared on the supernet's device (a GPU after ``device: cuda`` training); the correctness
vectors always come back to the CPU.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from famc.data import DataConfig, DataSplits, Images, InputBatches
from famc.device import to_device
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
    """Evaluates architectures of one supernet on fixed calibration data.

    On a CUDA ``device`` the supernet, the prepared inputs and every sub-network live on the GPU;
    ``amp`` runs prediction (not calibration) under float16 autocast. Vectors come back on the CPU.
    """

    def __init__(
        self,
        net: ElasticNet,
        calib: Images,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        batch_size: int = 500,
        bn_convention: BNConvention = "ofa",
        device: torch.device | str | None = None,
        amp: bool = False,
    ) -> None:
        # default: where the supernet already is (training evaluates on its own device)
        self.device = torch.device(device) if device else next(net.parameters()).device
        if amp and self.device.type != "cuda":
            raise FamcError("evaluation.amp needs evaluation.device `cuda`: set amp: false on CPU")
        # a copy on the GPU: the caller's CPU supernet stays where exporters expect it
        on = next(net.parameters()).device
        self.net = net if on == self.device else copy.deepcopy(net).to(self.device)
        self.calib = calib
        self.mean, self.std = tuple(mean), tuple(std)
        self.batch_size = batch_size
        self.bn_convention: BNConvention = bn_convention
        self.amp = amp
        self._prepared: dict[tuple[int, int], list[torch.Tensor]] = {}

    def inputs(self, images: Images, resolution: int) -> Sequence[torch.Tensor]:
        """Preprocessed channels-last batches of ``images`` at ``resolution``: cached when the set
        is preloaded, prepared afresh on every pass when it is streamed (memory stays bounded)."""
        batches = InputBatches(images, self.batch_size, resolution, self.mean, self.std)
        if not images.preloaded:
            return batches
        key = (id(images), resolution)
        if key not in self._prepared:
            self._prepared[key] = [to_device(x, self.device) for x in batches]
        return self._prepared[key]

    def model(self, arch: Arch) -> nn.Module:
        """The static sub-network with BN statistics re-estimated on the calibration subset."""
        sub = with_memory_format(self.net.extract(arch), torch.channels_last)
        batches = (to_device(x, self.device) for x in self.inputs(self.calib, arch.resolution))
        return recalibrate(sub, batches, self.bn_convention)

    @torch.inference_mode()
    def logits(self, model: nn.Module, images: Images, resolution: int, start: int = 0,
               stop: int | None = None) -> torch.Tensor:  # fmt: skip
        """Logits of samples ``start:stop`` (batch-aligned), batched as for the whole set, so a
        vector assembled from slices equals the one-pass vector exactly."""
        stop = len(images) if stop is None else stop
        b = self.batch_size
        if start % b or (stop % b and stop != len(images)):
            raise ValueError(f"slice {start}:{stop} is not aligned to batches of {b}")
        model.eval()
        batches = self.inputs(images, resolution)[start // b : -(-stop // b)]
        with torch.autocast(self.device.type, torch.float16, enabled=self.amp):
            return torch.cat([model(to_device(x, self.device)).float() for x in batches])

    def correct(self, arch: Arch, images: Images, race: Race | None = None,
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
            predicted = self.logits(model, images, arch.resolution, a, b).argmax(1).cpu()
            return predicted == images.labels[a:b]

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
