"""Sandwich-rule supernet training with in-place distillation (AttentiveNAS/BigNAS recipe).

Each step runs the largest sub-network on the labels (CE + label smoothing, dropout), ``k`` sampled
sub-networks and the smallest on the largest's detached soft predictions, sums the losses and takes
one optimizer step. Weight decay is applied once per step by the optimizer, i.e. it belongs to the
largest's objective; dropout is applied to the largest only.

The whole step is one ``nn.Module`` forward, so the same code runs under ``torchrun`` with
DistributedDataParallel: one forward and one backward per step is what DDP's reducer expects.

Reproducibility: every epoch reseeds its own generators from ``(seed, epoch)``, so a run resumed from
an epoch checkpoint continues exactly as an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from famc import __version__
from famc.data import DataSplits, to_input
from famc.errors import FamcError
from famc.evaluate.engine import Evaluator
from famc.io import atomic_path, sha256_path, write_text
from famc.metrics import top1
from famc.space import Arch, SearchSpace, describe, get_space
from famc.supernet import (
    ElasticNet,
    build_supernet,
    load_checkpoint,
    save_checkpoint,
    with_memory_format,
)
from famc.train.config import TrainConfig
from famc.train.optim import lr_at, param_groups
from famc.train.sampler import SAMPLERS

WEIGHTS = "supernet.safetensors"
STATE = "train_state.pt"
LOG = "metrics.jsonl"
METRICS = "supernet.metrics.json"


class SandwichStep(nn.Module):
    """One training step's forward: the summed sandwich loss of every sub-network."""

    def __init__(self, net: ElasticNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        archs: Sequence[Arch],
        mean: Sequence[float],
        std: Sequence[float],
        label_smoothing: float,
        dropout_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        inputs: dict[int, torch.Tensor] = {}
        losses = []
        teacher: torch.Tensor | None = None
        for i, arch in enumerate(archs):
            if arch.resolution not in inputs:
                inputs[arch.resolution] = to_input(images, arch.resolution, mean, std)
            self.net.set_active(arch)
            if i == 0:  # the largest: ground truth, dropout
                logits = self.net(inputs[arch.resolution], dropout_mask)
                losses.append(F.cross_entropy(logits, labels, label_smoothing=label_smoothing))
                teacher = F.softmax(logits.detach(), dim=1)
            else:  # in-place distillation from the largest
                assert teacher is not None
                logits = self.net(inputs[arch.resolution])
                losses.append(-(teacher * F.log_softmax(logits, dim=1)).sum(1).mean())
        parts = torch.stack(losses)
        return parts.sum(), parts.detach()


def dropout_mask(batch: int, features: int, p: float, gen: torch.Generator) -> torch.Tensor | None:
    """Inverted-dropout mask for the whole global batch: every rank draws the same one and takes
    its rows, so DDP drops exactly the activations a single process would."""
    if p <= 0:
        return None
    return (torch.rand(batch, features, generator=gen) >= p).float() / (1 - p)


class _Dist:
    """Rank/world from torchrun's environment; a single process otherwise."""

    def __init__(self) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def _prepare_out(out: Path, resume: bool, force: bool) -> dict[str, Any] | None:
    """The saved training state to resume from, or None for a fresh run."""
    state_path = out / STATE
    if resume:
        if not state_path.is_file():
            raise FamcError(f"--resume: no training state in {out} ({STATE} missing)")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        if sha256_path(out / WEIGHTS) != state["weights_sha256"]:
            raise FamcError(
                f"--resume: {out / WEIGHTS} does not match {state_path} (a run was killed while "
                f"checkpointing); restart with --force"
            )
        return state
    if state_path.exists() and not force:
        raise FamcError(
            f"{out} already holds a training run: pass --resume to continue it or --force to "
            f"start over"
        )
    return None


@dataclass
class _Run:
    """One training run, set up: what every epoch needs."""

    cfg: TrainConfig
    ctx: _Dist
    out: Path
    space: SearchSpace
    data: DataSplits
    net: ElasticNet
    step_module: nn.Module
    opt: torch.optim.Optimizer
    start_epoch: int
    steps_per_epoch: int

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs


def _setup(cfg: TrainConfig, resume: bool, force: bool) -> _Run:
    """Data, supernet, optimizer (restored on ``resume``) and the step module (DDP-wrapped)."""
    ctx = _Dist()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    state = _prepare_out(out, resume, force)
    space = get_space(cfg.space)
    data = cfg.data.load()
    space.check_input(data.name, data.channels, data.num_classes, "train config")
    torch.manual_seed(cfg.seed)  # the initial weights are part of the run's identity
    net = build_supernet(space)
    if state is not None:
        load_checkpoint(net, out / WEIGHTS)
    elif cfg.init:
        load_checkpoint(net, cfg.init)
    net = with_memory_format(net, torch.channels_last)
    step_module: nn.Module = SandwichStep(net)
    if ctx.world > 1:
        step_module = nn.parallel.DistributedDataParallel(step_module, find_unused_parameters=True)
    opt = torch.optim.SGD(
        param_groups(net, cfg.optimizer.weight_decay), lr=cfg.optimizer.lr,
        momentum=cfg.optimizer.momentum, nesterov=cfg.optimizer.nesterov,
    )  # fmt: skip
    if state is not None:
        opt.load_state_dict(state["optimizer"])
    steps = len(data.train) // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise FamcError(
            f"batch_size {cfg.batch_size} exceeds the {len(data.train)} training images"
        )
    start = 0 if state is None else int(state["epoch"])
    return _Run(cfg, ctx, out, space, data, net, step_module, opt, start, steps)


def _train_epoch(run: _Run, epoch: int, advance: Callable[[str], None]) -> dict[str, Any]:
    """One epoch of sandwich steps; returns its log record."""
    cfg, space, net, opt = run.cfg, run.space, run.net, run.opt
    net.train()
    rng = random.Random(f"{cfg.seed}:{epoch}")
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    drop = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 7)
    sampler = SAMPLERS[cfg.sampler]()
    warmup = round(cfg.warmup_epochs * run.steps_per_epoch)
    t0, seen, loss_sum = time.perf_counter(), 0, torch.zeros(2 + cfg.num_random)
    batches = run.data.train.batches(cfg.batch_size, shuffle=True, generator=gen, drop_last=True)
    features = describe(space, space.largest())[-1].in_c  # the classifier's widest input
    for i, (x, y) in zip(range(run.steps_per_epoch), batches, strict=False):
        step = epoch * run.steps_per_epoch + i
        for group in opt.param_groups:
            group["lr"] = lr_at(step, run.total_steps, warmup, cfg.optimizer.lr)
        archs = [space.largest(), *sampler.sample(space, rng, epoch, cfg.num_random),
                 space.smallest()]  # fmt: skip
        mask = dropout_mask(len(y), features, space.preset.dropout, drop)
        shard = slice(run.ctx.rank, None, run.ctx.world)
        loss, parts = run.step_module(x[shard], y[shard], archs, run.data.mean, run.data.std,
                                      cfg.label_smoothing, None if mask is None else mask[shard])  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += parts
        seen += len(y) * run.ctx.world
        rate = seen / (time.perf_counter() - t0)
        advance(f"epoch {epoch + 1}/{cfg.epochs} loss {parts.sum():.3f} {rate:.0f} img/s")
    n = run.steps_per_epoch
    return {
        "epoch": epoch + 1,
        "step": (epoch + 1) * n,
        "lr": opt.param_groups[0]["lr"],
        "loss_largest": round(float(loss_sum[0]) / n, 5),
        "loss_smallest": round(float(loss_sum[-1]) / n, 5),
        "loss_total": round(float(loss_sum.sum()) / n, 5),
        "images_per_s": round(seen / (time.perf_counter() - t0), 1),
        "seconds": round(time.perf_counter() - t0, 2),
    }


def train(
    cfg: TrainConfig, *, resume: bool = False, force: bool = False, progress: bool = True
) -> dict[str, Any] | None:
    """Train a supernet as ``cfg`` says; returns the final metrics (on the main process)."""
    run = _setup(cfg, resume, force)
    if run.ctx.main:
        run.out.mkdir(parents=True, exist_ok=True)
        _trim_log(run.out / LOG, run.start_epoch)
    with _progress(progress and run.ctx.main) as bar:
        done = run.start_epoch * run.steps_per_epoch
        task = bar.add_task("train", total=run.total_steps, completed=done, info="")

        def advance(info: str) -> None:
            bar.update(task, advance=1, info=info)

        for epoch in range(run.start_epoch, cfg.epochs):
            record = _train_epoch(run, epoch, advance)
            if run.ctx.main:  # log first: a resume trims log lines past its checkpoint
                with open(run.out / LOG, "a") as f:
                    f.write(json.dumps(record) + "\n")
                _checkpoint(run.out, run.net, run.opt, epoch + 1, cfg)
            run.ctx.barrier()
    if not run.ctx.main:
        return None
    metrics = evaluate_supernet(run.net, run.space, run.data, cfg, progress=progress)
    write_text(run.out / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def _trim_log(log: Path, epochs_done: int) -> None:
    """On resume, forget log lines of epochs after the checkpoint (they will be redone)."""
    if not log.exists():
        return
    lines = [ln for ln in log.read_text().splitlines() if ln.strip()]
    kept = [ln for ln in lines if json.loads(ln).get("epoch", 0) <= epochs_done]
    write_text(log, "".join(ln + "\n" for ln in kept))


def _checkpoint(
    out: Path, net: ElasticNet, opt: torch.optim.Optimizer, epoch: int, cfg: TrainConfig
) -> None:
    """Weights first, then the state that vouches for them by hash (resume checks the pair)."""
    save_checkpoint(
        net, out / WEIGHTS,
        {"space": cfg.space, "epoch": str(epoch), "famc_version": __version__,
         "config": cfg.model_dump_json()},
    )  # fmt: skip
    state = {
        "epoch": epoch,
        "optimizer": opt.state_dict(),
        "weights_sha256": sha256_path(out / WEIGHTS),
    }
    with atomic_path(out / STATE) as tmp:
        torch.save(state, tmp)


def evaluate_supernet(
    net: ElasticNet, space: SearchSpace, data: DataSplits, cfg: TrainConfig, *, progress: bool
) -> dict[str, Any]:
    """Test Top-1 of the largest, the smallest and a few random sub-networks after BN
    re-calibration."""
    rng = random.Random(f"{cfg.seed}:eval")
    archs = [space.largest(), space.smallest()] + [
        space.sample(rng) for _ in range(cfg.eval.num_random)
    ]
    ev = Evaluator(net.eval(), data.calib, data.mean, data.std,
                   batch_size=cfg.eval.batch_size, bn_convention=cfg.eval.bn_convention)  # type: ignore[arg-type]  # fmt: skip
    results = []
    with _progress(progress) as bar:
        task = bar.add_task("evaluate", total=len(archs), info="test split")
        for arch in archs:
            results.append(
                {"arch": arch.to_dict(), "top1": round(top1(ev.correct(arch, data.test)), 3)}
            )
            bar.update(task, advance=1)
    return {
        "space": space.name,
        "dataset": data.name,
        "split": "test",
        "bn_convention": cfg.eval.bn_convention,
        "largest": results[0],
        "smallest": results[1],
        "random": results[2:],
    }
