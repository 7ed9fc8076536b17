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
from famc.device import keep_freed_memory, to_device
from famc.errors import FamcError
from famc.evaluate.tree import PrefixTree
from famc.io import first_line
from famc.search.race import Race
from famc.space import Arch, SearchSpace, describe, get_space, params
from famc.supernet import (
    BNConvention,
    ElasticNet,
    build_supernet,
    load_checkpoint,
    recalibrate,
    with_memory_format,
)
from famc.supernet.bn import BN_CONVENTIONS
from famc.supernet.checkpoint import read_state_dict

#: Weights (parameters) the prefix trees of one call may hold: a generation of large
#: sub-networks (ResNet-50 sized, about 25 M each) is split rather than held whole (about 1 GB).
TREE_PARAMS = 250_000_000


def _groups(sizes: Sequence[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's sizes sum to at most ``budget`` (a single
    larger item forms its own group)."""
    groups: list[list[int]] = []
    total = budget + 1
    for i, size in enumerate(sizes):
        if total + size > budget:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += size
    return groups


def _check_aligned(start: int, stop: int, n: int, batch_size: int) -> None:
    """Slices of a split start on a batch boundary and end on one or at the split's end, so they
    are batched as the whole split is (a vector assembled from slices equals the one-pass one)."""
    if start % batch_size or (stop % batch_size and stop != n):
        raise ValueError(f"slice {start}:{stop} is not aligned to batches of {batch_size}")


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
        if self.device.type == "cpu":
            keep_freed_memory()
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
        _check_aligned(start, stop, len(images), b)
        model.eval()
        batches = self.inputs(images, resolution)[start // b : -(-stop // b)]
        with torch.autocast(self.device.type, torch.float16, enabled=self.amp):
            return torch.cat([model(to_device(x, self.device)).float() for x in batches])

    def correct(self, arch: Arch, images: Images, race: Race | None = None,
                done: torch.Tensor | None = None) -> torch.Tensor:  # fmt: skip
        """Boolean vector: which samples of ``images`` the calibrated ``arch`` classifies right
        (``correct_many`` of one)."""
        return self.correct_many([arch], images, race, [done])[0]

    def correct_many(self, archs: Sequence[Arch], images: Images, race: Race | None = None,
                     done: Sequence[torch.Tensor | None] | None = None) -> list[torch.Tensor]:  # fmt: skip
        """Boolean vectors of several architectures, evaluated as one prefix tree per resolution
        (famc.evaluate.tree): layers they share are calibrated and run once.

        With a ``race`` the first ``race.images`` are judged before the rest is computed, and a
        stopped candidate's vector is that prefix. ``done[i]`` is a prefix of candidate ``i``'s
        vector computed before (from the cache): only the remainder is predicted. A generation
        whose sub-networks together exceed ``TREE_PARAMS`` weights is split into several trees."""
        done = list(done or [None] * len(archs))
        out: list[torch.Tensor] = []
        for group in _groups([params(self.net.space, a) for a in archs], TREE_PARAMS):
            out += self._correct_group([archs[i] for i in group], images, race,
                                       [done[i] for i in group])  # fmt: skip
        return out

    def _correct_group(self, archs: Sequence[Arch], images: Images, race: Race | None,
                       done: Sequence[torch.Tensor | None]) -> list[torch.Tensor]:  # fmt: skip
        """``correct_many`` for candidates evaluated as one set of trees."""
        n = len(images)
        have = [torch.zeros(0, dtype=torch.bool) if d is None else d for d in done]
        stop = [n if race is None or h.numel() >= race.images else min(race.images, n)
                for h in have]  # fmt: skip
        trees = self._trees({i: a for i, a in enumerate(archs) if have[i].numel() < n})
        first = self._predict(trees, archs, images, {i: (h.numel(), stop[i])
                                                     for i, h in enumerate(have)})  # fmt: skip
        vecs = [torch.cat([h, first.get(i, h[:0])]) for i, h in enumerate(have)]
        more = {i: (stop[i], n) for i, v in enumerate(vecs)
                if stop[i] < n and (race is None or race.keep_going(v))}  # fmt: skip
        rest = self._predict(trees, archs, images, more)
        return [torch.cat([v, rest[i]]) if i in rest else v for i, v in enumerate(vecs)]

    def _trees(self, archs: dict[int, Arch]) -> dict[int, PrefixTree]:
        """The calibrated prefix tree of the candidates ``archs`` (by index) at each resolution."""
        trees: dict[int, PrefixTree] = {}
        for i, arch in archs.items():
            net = with_memory_format(self.net.extract(arch), torch.channels_last)
            tree = trees.setdefault(arch.resolution, PrefixTree())
            tree.add(i, describe(self.net.space, arch), net)
        for resolution, tree in trees.items():
            batches = (to_device(x, self.device) for x in self.inputs(self.calib, resolution))
            tree.calibrate(batches, self.bn_convention)
        return trees

    def _predict(self, trees: dict[int, PrefixTree], archs: Sequence[Arch], images: Images,
                 ranges: dict[int, tuple[int, int]]) -> dict[int, torch.Tensor]:  # fmt: skip
        """Correctness of candidate ``i`` on samples ``ranges[i]`` (batch-aligned), every
        candidate of a resolution in one pass of its tree over the batches any of them needs."""
        b, n = self.batch_size, len(images)
        ranges = {i: r for i, r in ranges.items() if r[0] < r[1]}
        for start, stop in ranges.values():
            _check_aligned(start, stop, n, b)
        predicted: dict[int, list[torch.Tensor]] = {i: [] for i in ranges}

        def sink(i: int, logits: torch.Tensor) -> None:
            predicted[i].append(logits.float().argmax(1).cpu())

        for resolution, tree in trees.items():
            mine = {i: r for i, r in ranges.items() if archs[i].resolution == resolution}
            if not mine:
                continue
            lo, hi = (
                min(r[0] for r in mine.values()) // b,
                -(-max(r[1] for r in mine.values()) // b),
            )
            batches = (to_device(x, self.device) for x in self.inputs(images, resolution)[lo:hi])

            def active(batch: int, mine: dict[int, tuple[int, int]] = mine) -> set[int]:
                return {i for i, (s, e) in mine.items() if s <= batch * b < e}

            with torch.autocast(self.device.type, torch.float16, enabled=self.amp):
                tree.predict(batches, lo, active, sink)
        return {i: torch.cat(predicted[i]) == images.labels[s:e] for i, (s, e) in ranges.items()}


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
