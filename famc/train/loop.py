"""Sandwich-rule supernet training with in-place distillation (AttentiveNAS/BigNAS recipe).

Each step runs the largest sub-network on the labels (CE + label smoothing, dropout), the sampled
sub-networks and the smallest on the largest's detached soft predictions, sums the (weighted) losses
and takes one optimizer step. Weight decay is applied once per step by the optimizer, i.e. it belongs
to the largest's objective; dropout is applied to the largest only. Which sub-networks a step trains,
with which weights and extra terms, is ``famc.train.methods``' business (samplers, schedules,
landmarks, SSE, CPT); the loop only runs the plan.

The whole step is one ``nn.Module`` forward, so the same code runs under ``torchrun`` with
DistributedDataParallel: one forward and one backward per step is what DDP's reducer expects. Every
decision a method takes from losses uses losses averaged over ranks, so all ranks plan the same step.

Reproducibility: every epoch reseeds its own generators from ``(seed, epoch)`` and the methods' state
is checkpointed, so a run resumed from an epoch checkpoint continues exactly as an uninterrupted one;
a run stopped mid-epoch by ``max_steps`` also saves its generators' states and resumes exactly.

Devices (``device: cpu | cuda | auto``): the model, the batches and every forward (training,
attentive scoring, landmark hinge, BN re-calibration, evaluation) run on the chosen device; the
data and every generator stay on the CPU, so the sampled architectures and batches do not depend
on the device, but GPU numerics differ from CPU ones (see ``famc.device``). Checkpoints hold CPU
tensors, so a run trained on a GPU loads and resumes on a CPU host and vice versa. Under torchrun
on CUDA each rank drives ``cuda:LOCAL_RANK`` and the ranks use NCCL; on the CPU, gloo.
"""

from __future__ import annotations

import functools
import json
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from itertools import islice
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn as dist_nn
import torch.nn.functional as F
from torch import nn

from famc import __version__
from famc.data import DataSplits, ImageSet, to_input
from famc.device import device_label, resolve_device, to_device
from famc.errors import FamcError
from famc.evaluate.engine import Evaluator
from famc.evaluate.rank import LANDMARKS_KEY, Truth, rank_supernet
from famc.io import atomic_path, first_line, read_torch, sha256_path, write_text
from famc.metrics import top1
from famc.progress import Reporter, Task
from famc.space import Arch, SearchSpace, describe, get_space
from famc.supernet import (
    ElasticNet,
    build_supernet,
    load_checkpoint,
    save_checkpoint,
    with_memory_format,
)
from famc.train.config import DEVICE_FIX, TrainConfig
from famc.train.landmarks import RankBatches, holdout_split
from famc.train.methods import Methods, StepPlan
from famc.train.optim import lr_at, param_groups
from famc.train.sampler import LossFn

WEIGHTS = "supernet.safetensors"
STATE = "train_state.pt"
LOG = "metrics.jsonl"
METRICS = "supernet.metrics.json"


class SandwichStep(nn.Module):
    """One training step's forward: the weighted sandwich loss of every sub-network of the plan,
    plus the landmark ranking term."""

    def __init__(self, net: ElasticNet) -> None:
        super().__init__()
        self.net = net

    def forward(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        plan: StepPlan,
        mean: Sequence[float],
        std: Sequence[float],
        label_smoothing: float,
        dropout_mask: torch.Tensor | None,
        rank_batch: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(loss to minimise, each network's unweighted loss, the ranking hinge)."""
        inputs: dict[int, torch.Tensor] = {}
        losses = []
        teacher: torch.Tensor | None = None
        for i, arch in enumerate(plan.archs):
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
        loss = (parts * parts.new_tensor(plan.weights)).sum()
        hinge = parts.new_zeros(())
        if plan.pair is not None:
            assert rank_batch is not None
            hinge = self.rank_hinge(*rank_batch, *plan.pair, mean, std)
            loss = loss + plan.rank_weight * hinge
        return loss, parts.detach(), hinge.detach()

    def rank_hinge(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        worse: Arch,
        better: Arch,
        mean: Sequence[float],
        std: Sequence[float],
    ) -> torch.Tensor:
        """Landmark regularisation's ``max(0, L(x; better) − L(x; worse))``: zero when the
        supernet's losses already order the pair as stand-alone training does. ``L`` is the
        cross-entropy over the whole (all ranks') batch, so DDP optimises what one process would."""
        ce = []
        for arch in (worse, better):
            self.net.set_active(arch)
            logits = self.net(to_input(images, arch.resolution, mean, std))
            total = torch.stack([F.cross_entropy(logits, labels, reduction="sum"),
                                 logits.new_tensor(float(len(labels)))])  # fmt: skip
            if dist.is_initialized() and dist.get_world_size() > 1:
                total = dist_nn.all_reduce(total)
            ce.append(total[0] / total[1])
        return F.relu(ce[1] - ce[0])


def dropout_mask(batch: int, features: int, p: float, gen: torch.Generator) -> torch.Tensor | None:
    """Inverted-dropout mask for the whole global batch: every rank draws the same one and takes
    its rows, so DDP drops exactly the activations a single process would."""
    if p <= 0:
        return None
    return (torch.rand(batch, features, generator=gen) >= p).float() / (1 - p)


class _Dist:
    """Rank/world from torchrun's environment (a single process otherwise), and this process's
    device: on CUDA, the GPU of its ``LOCAL_RANK`` with NCCL between ranks; on the CPU, gloo."""

    def __init__(self, device: torch.device) -> None:
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.device = device
        if device.type == "cuda":
            self.device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
            torch.cuda.set_device(self.device)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, t: torch.Tensor) -> torch.Tensor:
        """The average of ``t`` over all ranks (``t`` itself in a single process)."""
        if self.world > 1:
            t = t.clone()
            dist.all_reduce(t)
            t /= self.world
        return t


RESTART = "start the run again with --force"
CURSOR_KEYS = {"index", "rng", "dropout", "totals"}


def _valid_state(state: object) -> bool:
    """What a resume needs, of the right types: the steps done, where a run stopped mid-epoch
    stood (or None), optimizer and methods' state, weight hash."""
    if not (
        isinstance(state, dict)
        and isinstance(state.get("step"), int)
        and state["step"] >= 0
        and isinstance(state.get("optimizer"), dict)
        and isinstance(state.get("methods"), dict)
        and isinstance(state.get("weights_sha256"), str)
    ):
        return False
    cursor = state.get("cursor")
    return cursor is None or (
        isinstance(cursor, dict)
        and set(cursor) == CURSOR_KEYS
        and isinstance(cursor["index"], int)
        and cursor["index"] >= 0
        and isinstance(cursor["totals"], dict)
        and set(cursor["totals"]) <= {f.name for f in fields(_Totals)}
        and isinstance(cursor["dropout"], torch.Tensor)
        and _rng_state(cursor["rng"])
    )


def _rng_state(state: object) -> bool:
    """Whether ``state`` is one ``random.Random.getstate()`` gave."""
    try:
        random.Random().setstate(state)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False
    return True


def _prepare_out(out: Path, resume: bool, force: bool) -> dict[str, Any] | None:
    """The saved training state to resume from, or None for a fresh run."""
    state_path = out / STATE
    if resume:
        if not state_path.is_file():
            raise FamcError(f"--resume: no training state in {out} ({STATE} missing)")
        state = read_torch(state_path, "training state", RESTART)
        if not _valid_state(state):
            raise FamcError(f"--resume: {state_path} is not a famc training state; {RESTART}")
        if not (out / WEIGHTS).is_file():
            raise FamcError(f"--resume: {out / WEIGHTS} is missing; {RESTART}")
        if sha256_path(out / WEIGHTS) != state["weights_sha256"]:
            raise FamcError(
                f"--resume: {out / WEIGHTS} does not match {state_path} (a run was killed while "
                f"checkpointing); {RESTART}"
            )
        return state
    if state_path.exists() and not force:
        raise FamcError(
            f"{out} already holds a training run: pass --resume to continue it or --force to "
            f"start over"
        )
    return None


@dataclass
class _Totals:
    """An epoch's running sums; a mid-epoch checkpoint saves them so the log line stays exact."""

    steps: int = 0
    loss_largest: float = 0.0
    loss_smallest: float = 0.0
    loss_total: float = 0.0
    rank_hinge: float = 0.0
    passes: int = 0  # sub-network forward+backward passes
    scoring_forwards: int = 0  # no-grad forwards spent choosing sub-networks (attentive: loss)
    images: int = 0

    def add(self, plan: StepPlan, losses: list[float], hinge: float, images: int) -> None:
        self.steps += 1
        self.loss_largest += losses[0]
        self.loss_smallest += losses[plan.n_sampled + 1]
        self.loss_total += sum(w * v for w, v in zip(plan.weights, losses, strict=True))
        self.loss_total += plan.rank_weight * hinge
        self.rank_hinge += hinge
        self.passes += plan.passes
        self.images += images


@dataclass
class _Run:
    """One training run, set up: what every epoch needs."""

    cfg: TrainConfig
    ctx: _Dist
    out: Path
    space: SearchSpace
    data: DataSplits
    images: ImageSet  # what the supernet loss trains on (train minus the landmarks' held-out)
    net: ElasticNet
    step_module: nn.Module
    opt: torch.optim.Optimizer
    methods: Methods
    rank_batches: RankBatches | None
    steps_per_epoch: int
    step: int  # optimizer steps done
    cursor: dict[str, Any] | None  # where a run stopped mid-epoch (--max-steps) stood

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.cfg.epochs

    @functools.cached_property
    def features(self) -> int:
        """Width of the classifier's input in the largest sub-network (the dropout mask's)."""
        return describe(self.space, self.space.largest())[-1].in_c


def _setup(cfg: TrainConfig, resume: bool, force: bool) -> _Run:
    """Data, supernet, optimizer and methods (restored on ``resume``) and the step module
    (DDP-wrapped), on the config's device."""
    ctx = _Dist(resolve_device(cfg.device, "train config: field `device`", DEVICE_FIX))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.out)
    state = _prepare_out(out, resume, force)
    space = get_space(cfg.space)
    data = cfg.data.load()
    space.check_input(data.name, data.channels, data.num_classes, "train config")
    if not isinstance(data.train, ImageSet):
        raise FamcError("famc train reads preloaded data: drop `data.stream` from the train "
                        "config (streamed folders serve search and evaluation)")  # fmt: skip
    images, rank_batches = data.train, None
    if cfg.landmarks is not None:
        images, held_out = holdout_split(images, cfg.landmarks.holdout, cfg.seed)
        rank_batches = RankBatches(held_out, cfg.batch_size, cfg.seed)
    steps = len(images) // cfg.batch_size
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if steps == 0:
        raise FamcError(f"batch_size {cfg.batch_size} exceeds the {len(images)} training images")
    methods = Methods(cfg, space, steps * cfg.epochs)
    if cfg.eval.truth is not None:  # fail now, not after hours of training
        _check_rankable(Truth(cfg.eval.truth, space), methods)
    torch.manual_seed(cfg.seed)  # the initial weights are part of the run's identity
    net = build_supernet(space)
    if state is not None:
        load_checkpoint(net, out / WEIGHTS)
        try:
            methods.load_state_dict(state["methods"])
        except (ValueError, KeyError, TypeError, RuntimeError, FamcError) as exc:
            raise FamcError(f"--resume: the training methods' state in {out / STATE} does not fit "
                            f"this config ({first_line(exc)}); {RESTART}") from None  # fmt: skip
    elif cfg.init:
        load_checkpoint(net, cfg.init)
    net = with_memory_format(net.to(ctx.device), torch.channels_last)
    step_module: nn.Module = SandwichStep(net)
    if ctx.world > 1:
        ids = None if ctx.device.type == "cpu" else [ctx.device]
        step_module = nn.parallel.DistributedDataParallel(step_module, device_ids=ids,
                                                          find_unused_parameters=True)  # fmt: skip
    opt = torch.optim.SGD(
        param_groups(net, cfg.optimizer.weight_decay), lr=cfg.optimizer.lr,
        momentum=cfg.optimizer.momentum, nesterov=cfg.optimizer.nesterov,
    )  # fmt: skip
    if state is not None:
        try:
            opt.load_state_dict(state["optimizer"])
        except (ValueError, KeyError, RuntimeError) as exc:
            raise FamcError(f"--resume: the optimizer state in {out / STATE} does not fit this "
                            f"config ({first_line(exc)}); {RESTART}") from None  # fmt: skip
    step, cursor = (0, None) if state is None else (int(state["step"]), state["cursor"])
    return _Run(cfg, ctx, out, space, data, images, net, step_module, opt, methods, rank_batches,
                steps, step, cursor)  # fmt: skip


def _check_rankable(truth: Truth, methods: Methods) -> None:
    landmarks = set(methods.landmarks.archs) if methods.landmarks else set()
    if sum(a not in landmarks for a in truth.archs) < 2:
        raise FamcError(
            f"eval.truth: {truth.path} has fewer than 2 architectures besides the landmarks the "
            f"run trains with, so nothing is left to rank: set landmarks.count below "
            f"{len(truth.archs) - 1} or rank against another truth file"
        )


def _scoring_loss(run: _Run, x: torch.Tensor, y: torch.Tensor, totals: _Totals) -> LossFn:
    """The step's minibatch loss of candidate sub-networks, without gradients (attentive
    sampling's score), averaged over ranks so every rank picks the same ones."""
    cfg, data = run.cfg, run.data

    @torch.no_grad()
    def loss(archs: Sequence[Arch]) -> list[float]:
        values = []
        for arch in archs:
            run.net.set_active(arch)
            logits = run.net(to_input(x, arch.resolution, data.mean, data.std))
            values.append(F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing))
        totals.scoring_forwards += len(archs)
        return [float(v) for v in run.ctx.mean(torch.stack(values))]

    return loss


def _step(
    run: _Run, rng: random.Random, drop: torch.Generator, batch: tuple[torch.Tensor, torch.Tensor],
    totals: _Totals, warmup: int,
) -> None:  # fmt: skip
    """One optimizer step: plan the sub-networks, forward/backward them, report back."""
    cfg, data, (x, y) = run.cfg, run.data, batch
    for group in run.opt.param_groups:
        group["lr"] = lr_at(run.step, run.total_steps, warmup, cfg.optimizer.lr)
    shard, dev = slice(run.ctx.rank, None, run.ctx.world), run.ctx.device
    x, y, images = to_device(x[shard], dev), to_device(y[shard], dev), len(y)
    plan = run.methods.plan(run.step, rng, _scoring_loss(run, x, y, totals))
    mask = dropout_mask(images, run.features, run.space.preset.dropout, drop)
    rank_batch = None
    if plan.pair is not None:
        assert run.rank_batches is not None
        rx, ry = run.rank_batches(run.step)
        rank_batch = (to_device(rx[shard], dev), to_device(ry[shard], dev))
    mask = None if mask is None else to_device(mask[shard], dev)
    loss, parts, hinge = run.step_module(x, y, plan, data.mean, data.std, cfg.label_smoothing,
                                         mask, rank_batch)  # fmt: skip
    run.opt.zero_grad(set_to_none=True)
    loss.backward()
    run.opt.step()
    losses = [float(v) for v in run.ctx.mean(parts)]
    run.methods.observe(plan, losses)
    totals.add(plan, losses, float(hinge), images)
    run.step += 1


def _train_epoch(
    run: _Run, epoch: int, stop: int, task: Task
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Steps of ``epoch`` up to batch index ``stop``; returns its log record and, when it stopped
    before the epoch's end, the cursor to resume from."""
    cfg = run.cfg
    run.net.train()
    rng = random.Random(f"{cfg.seed}:{epoch}")
    gen = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch)
    drop = torch.Generator().manual_seed(cfg.seed * 100_003 + epoch * 7)
    totals, first = _Totals(), 0
    if run.cursor is not None:  # resuming where --max-steps stopped this epoch
        first, totals = run.cursor["index"], _Totals(**run.cursor["totals"])
        rng.setstate(run.cursor["rng"])
        drop.set_state(run.cursor["dropout"])
        run.cursor = None
    warmup = round(cfg.warmup_epochs * run.steps_per_epoch)
    t0 = time.perf_counter()
    batches = run.images.batches(cfg.batch_size, shuffle=True, generator=gen, drop_last=True)
    for batch in islice(batches, first, stop):
        _step(run, rng, drop, batch, totals, warmup)
        rate = totals.images / (time.perf_counter() - t0)
        task.advance(epoch=f"{epoch + 1}/{cfg.epochs}",
                     loss=f"{totals.loss_total / totals.steps:.3f}", rate=f"{rate:.0f} img/s")  # fmt: skip
    n, seconds = max(1, totals.steps), time.perf_counter() - t0
    record: dict[str, Any] = {
        "epoch": epoch + 1,
        "step": run.step,
        "lr": run.opt.param_groups[0]["lr"],
        "loss_largest": round(totals.loss_largest / n, 5),
        "loss_smallest": round(totals.loss_smallest / n, 5),
        "loss_total": round(totals.loss_total / n, 5),
        "passes": totals.passes,
        "scoring_forwards": totals.scoring_forwards,
        "images_per_s": round(totals.images / seconds, 1),
        "seconds": round(seconds, 2),
    }
    if run.methods.landmarks is not None:
        record["rank_hinge"] = round(totals.rank_hinge / n, 5)
        record["rank_lambda"] = round(run.methods.landmarks.weight(run.step - 1), 5)
    if stop == run.steps_per_epoch:
        return record, None
    cursor = {"index": stop, "rng": rng.getstate(), "dropout": drop.get_state(),
              "totals": asdict(totals)}  # fmt: skip
    return {**record, "partial": True}, cursor


def train(
    cfg: TrainConfig,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any] | None:
    """Train a supernet as ``cfg`` says (stopping after ``max_steps`` optimizer steps in all, if
    given, still checkpointing and evaluating); returns the final metrics (on the main process)."""
    run = _setup(cfg, resume, force)
    if run.ctx.main:
        run.out.mkdir(parents=True, exist_ok=True)
        _trim_log(run.out / LOG, run.step)
    end = run.total_steps if max_steps is None else min(max_steps, run.total_steps)
    title = "train" if run.step == 0 else f"train from step {run.step}"
    with Reporter.auto(progress and run.ctx.main).task(title, max(0, end - run.step)) as task:
        while run.step < end:
            epoch = run.step // run.steps_per_epoch
            stop = min(run.steps_per_epoch, end - epoch * run.steps_per_epoch)
            record, cursor = _train_epoch(run, epoch, stop, task)
            if run.ctx.main:  # log first: a resume trims log lines past its checkpoint
                with open(run.out / LOG, "a") as f:
                    f.write(json.dumps(record) + "\n")
                _checkpoint(run, cursor)
            run.ctx.barrier()
    if not run.ctx.main:
        return None
    landmarks = run.methods.landmarks.archs if run.methods.landmarks else []
    metrics = evaluate_supernet(run.net, run.space, run.data, cfg, progress=progress,
                                landmarks=landmarks)  # fmt: skip
    write_text(run.out / METRICS, json.dumps(metrics, indent=2) + "\n")
    return metrics


def _trim_log(log: Path, steps_done: int) -> None:
    """On resume, forget log lines past the checkpoint and partial-epoch lines (they will be
    redone)."""
    if not log.exists():
        return
    kept = [ln for ln, rec in _log_records(log)
            if _int(rec.get("step", 0)) <= steps_done and not rec.get("partial")]  # fmt: skip
    write_text(log, "".join(ln + "\n" for ln in kept))


def _int(value: object) -> int:
    """A log field that should be a step count; anything else sorts past every checkpoint."""
    return value if isinstance(value, int) else 1 << 62


def _log_records(log: Path) -> list[tuple[str, dict[str, Any]]]:
    """The log's lines that parse; a line torn by a kill belongs to an epoch that is redone."""
    out = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            out.append((line, rec))
    return out


def _checkpoint(run: _Run, cursor: dict[str, Any] | None) -> None:
    """Weights first, then the state that vouches for them by hash (resume checks the pair)."""
    cfg = run.cfg
    meta = {"space": cfg.space, "step": str(run.step), "famc_version": __version__,
            "config": cfg.model_dump_json(), "device": device_label(run.ctx.device),
            "torch": torch.__version__}  # fmt: skip
    if run.methods.landmarks is not None:  # `famc rank` leaves them out of its figures
        meta[LANDMARKS_KEY] = json.dumps([a.to_dict() for a in run.methods.landmarks.archs])
    save_checkpoint(run.net, run.out / WEIGHTS, meta)
    state = {
        "step": run.step,
        "cursor": cursor,
        "optimizer": _on_cpu(run.opt.state_dict()),
        "methods": run.methods.state_dict(),
        "weights_sha256": sha256_path(run.out / WEIGHTS),
    }
    with atomic_path(run.out / STATE) as tmp:
        torch.save(state, tmp)


def _on_cpu(obj: Any) -> Any:
    """``obj`` with every tensor on the CPU: a state saved from a GPU run loads on any host (and
    ``Optimizer.load_state_dict`` moves it to the parameters' device on resume)."""
    if isinstance(obj, torch.Tensor):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: _on_cpu(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(_on_cpu(v) for v in obj)
    return obj


def evaluate_supernet(
    net: ElasticNet,
    space: SearchSpace,
    data: DataSplits,
    cfg: TrainConfig,
    *,
    progress: bool,
    landmarks: Sequence[Arch] = (),
) -> dict[str, Any]:
    """Test Top-1 of the largest, the smallest and a few random sub-networks after BN
    re-calibration; with ``cfg.eval.truth``, the ranking figures against that stand-alone truth
    (landmarks excluded)."""
    rng = random.Random(f"{cfg.seed}:eval")
    archs = [space.largest(), space.smallest()] + [
        space.sample(rng) for _ in range(cfg.eval.num_random)
    ]
    ev = Evaluator(net.eval(), data.calib, data.mean, data.std,
                   batch_size=cfg.eval.batch_size, bn_convention=cfg.eval.bn_convention)  # type: ignore[arg-type]  # fmt: skip
    results = []
    reporter = Reporter.auto(progress)
    with reporter.task("evaluate", len(archs), split="test") as task:
        for arch in archs:
            results.append(
                {"arch": arch.to_dict(), "top1": round(top1(ev.correct(arch, data.test)), 3)}
            )
            task.advance()
    metrics: dict[str, Any] = {
        "space": space.name,
        "dataset": data.name,
        "split": "test",
        "bn_convention": cfg.eval.bn_convention,
        "largest": results[0],
        "smallest": results[1],
        "random": results[2:],
    }
    if cfg.eval.truth is not None:
        truth = Truth(cfg.eval.truth, space)
        report = rank_supernet(ev, space, truth, data, exclude=landmarks, reporter=reporter)
        metrics["ranking"] = report.model_dump()
    return metrics
