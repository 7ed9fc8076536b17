"""Stand-alone training of one architecture from scratch: the ground truth a supernet is ranked by.

A weight-sharing supernet is only trustworthy if it orders its sub-networks the way they would be
ordered had each been trained on its own. This module trains one extracted architecture alone with
one fixed recipe; a set of such runs (``bench/standalone_truth.py``) is that reference ranking.

The recipe mirrors the supernet's (SGD with Nesterov momentum, linear warm-up then cosine decay,
label smoothing, weight decay on conv/linear weights only, no augmentation, the same ``train``
split and input pipeline), so the two differ only in weight sharing. The model is the supernet's
extraction *re-initialised for its own shapes*: a slice of a freshly built supernet carries the
init scale of the largest layer (fan-out of a 7×7 kernel over the widest expansion), which would
start small architectures with too-small weights and bias the ranking.

Determinism: the weights come from a generator seeded with ``recipe.seed`` (the global RNG is never
used) and the batch order from one seeded with ``(seed, epoch)``; with a fixed thread count, CPU
training repeats bit for bit. ``device`` (cpu, cuda or auto) moves the model and each batch, never
the generators, so a GPU run starts from the same weights and sees the same batches; its numerics
differ from the CPU's (see ``famc.device``), so each result records the device and torch it ran on.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from famc.data import to_input
from famc.device import device_label, resolve_device, to_device
from famc.metrics import pack_correct, top1, unpack_correct
from famc.space import flops, params
from famc.supernet import build_supernet, with_memory_format
from famc.train.optim import lr_at, param_groups

if TYPE_CHECKING:
    from famc.data import DataSplits, Images
    from famc.space import Arch, SearchSpace

__all__ = [
    "StandaloneRecipe",
    "StandaloneResult",
    "evaluate",
    "init_model",
    "lr_at",
    "pack_correct",
    "train_standalone",
    "unpack_correct",
]

EVAL_BATCH = 1000
LogFn = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class StandaloneRecipe:
    """Everything that decides a stand-alone run besides the architecture and the data.

    Defaults follow the demo supernet's recipe (``examples/fashion/train.yaml``) with a learning
    rate for one network per step instead of a sandwich of three. ``epochs`` is the most that fits
    the 24-architecture ground truth into about 3 hours on 2 cores (bench/standalone_truth.py);
    scale ``lr`` linearly with ``batch_size``.
    """

    epochs: int = 11
    batch_size: int = 256
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-5
    label_smoothing: float = 0.1
    warmup_epochs: float = 0.3
    seed: int = 0
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class StandaloneResult:
    """One trained architecture: cost, test Top-1, which test images it got right, and its log.

    ``correct`` is ``numpy.packbits`` of the boolean test-correctness vector, base64-encoded, so a
    JSON file of results still supports every flip metric of :mod:`famc.metrics`.
    """

    arch: dict[str, Any]
    flops: int
    params: int
    top1: float
    n_test: int
    correct: str
    log: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"  # where it trained: GPU numerics differ from the CPU's
    torch_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def correct_vector(self) -> torch.Tensor:
        return unpack_correct(self.correct, self.n_test)


@torch.no_grad()
def _ofa_init_(model: nn.Module, generator: torch.Generator) -> None:
    """Once-for-All's init, computed from each layer's *own* shape: Kaiming normal (fan-out) convs,
    zero conv biases, BN weight 1 / bias 0 with fresh running statistics, and Linear weights
    uniform in ±1/√in with a zero bias."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", generator=generator)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
            m.reset_running_stats()
        elif isinstance(m, nn.Linear):
            bound = 1.0 / math.sqrt(m.weight.size(1))
            nn.init.uniform_(m.weight, -bound, bound, generator=generator)
            nn.init.zeros_(m.bias)


def init_model(space: SearchSpace, arch: Arch, seed: int) -> nn.Module:
    """The static model of ``arch`` (the exact modules famc deploys), freshly initialised.

    Extracting from the supernet guarantees the stand-alone network is the same graph the supernet
    scores; re-initialising makes its starting point independent of the supernet's widest shapes
    and of the global RNG.
    """
    model = build_supernet(space).extract(arch)
    _ofa_init_(model, torch.Generator().manual_seed(seed))
    return with_memory_format(model, torch.channels_last).train()


def _optimizer(model: nn.Module, recipe: StandaloneRecipe) -> torch.optim.SGD:
    """SGD whose weight decay touches conv/linear weights only: decaying BN affine parameters and
    biases only shrinks them towards a worse init (common practice since Goyal et al., 2017)."""
    groups = param_groups(model, recipe.weight_decay)
    return torch.optim.SGD(groups, lr=recipe.lr, momentum=recipe.momentum, nesterov=recipe.nesterov)


@contextmanager
def _threads(n: int) -> Iterator[None]:
    """Run with ``n`` intra-op threads and restore the caller's setting afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _train_epoch(
    model: nn.Module,
    opt: torch.optim.SGD,
    data: DataSplits,
    recipe: StandaloneRecipe,
    resolution: int,
    epoch: int,
) -> float:
    """One pass over ``data.train`` in seeded order (full batches only, so every BN batch has the
    same size); returns the mean training loss."""
    steps = len(data.train) // recipe.batch_size
    total, warmup = steps * recipe.epochs, round(recipe.warmup_epochs * steps)
    gen = torch.Generator().manual_seed(recipe.seed * 100_003 + epoch)
    batches = data.train.batches(recipe.batch_size, shuffle=True, generator=gen, drop_last=True)
    model.train()
    dev = next(model.parameters()).device
    losses = []  # read once per epoch: a read per step would stall a GPU's queue every step
    for i, (images, labels) in enumerate(batches):
        lr = lr_at(epoch * steps + i, total, warmup, recipe.lr)
        for group in opt.param_groups:
            group["lr"] = lr
        x = to_input(to_device(images, dev), resolution, data.mean, data.std, channels_last=True)
        loss = F.cross_entropy(model(x), to_device(labels, dev),
                               label_smoothing=recipe.label_smoothing)  # fmt: skip
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return sum(torch.stack(losses).tolist()) / steps


@torch.inference_mode()
def evaluate(model: nn.Module, images: Images, resolution: int, data: DataSplits) -> torch.Tensor:
    """Boolean correctness vector of ``model`` on ``images`` in eval mode, i.e. with the BN running
    statistics it accumulated while training (no re-calibration: it was never weight-shared).
    Runs on the model's device; the vector is on the CPU."""
    model.eval()
    dev = next(model.parameters()).device
    hits = [
        model(to_input(to_device(x, dev), resolution, data.mean, data.std)).argmax(1).cpu() == y
        for x, y in images.batches(EVAL_BATCH, resolution=resolution)
    ]
    return torch.cat(hits)


def train_standalone(
    space: SearchSpace,
    arch: Arch | Mapping[str, Any],
    data: DataSplits,
    recipe: StandaloneRecipe,
    *,
    log: LogFn | None = None,
    device: str = "cpu",
) -> StandaloneResult:
    """Train ``arch`` from scratch on ``data.train`` with ``recipe`` on ``device`` (cpu, cuda or
    auto); evaluate on ``data.test``.

    ``log`` (if given) receives each epoch's row ``{epoch, loss, seconds, cpu_seconds}`` as soon as
    the epoch ends, so long runs can report progress. ``cpu_seconds`` is the process's CPU time:
    it does not grow while the run is paused (SIGSTOP), but it does when other jobs share the
    cores (idle intra-op threads spin), so neither column is a clean cost under contention.
    """
    a = space.arch_from_dict(arch) if isinstance(arch, Mapping) else space.validate(arch)
    steps = len(data.train) // recipe.batch_size
    if steps == 0 or recipe.epochs < 1:
        raise ValueError(
            f"need epochs >= 1 and batch_size <= {len(data.train)} training images; got "
            f"epochs={recipe.epochs}, batch_size={recipe.batch_size}"
        )
    dev = resolve_device(device, "train_standalone: device", "pass device='cpu' or 'auto'")
    start = time.perf_counter()
    rows: list[dict[str, Any]] = []
    with _threads(recipe.threads):
        model = init_model(space, a, recipe.seed).to(dev)
        opt = _optimizer(model, recipe)
        for epoch in range(recipe.epochs):
            t0, c0 = time.perf_counter(), time.process_time()
            loss = _train_epoch(model, opt, data, recipe, a.resolution, epoch)
            row = {
                "epoch": epoch + 1,
                "loss": round(loss, 5),
                "seconds": round(time.perf_counter() - t0, 2),
                "cpu_seconds": round(time.process_time() - c0, 2),
            }
            rows.append(row)
            if log is not None:
                log(row)
        correct = evaluate(model, data.test, a.resolution, data)
    return StandaloneResult(
        arch=a.to_dict(),
        flops=flops(space, a),
        params=params(space, a),
        top1=round(top1(correct), 3),
        n_test=int(correct.numel()),
        correct=pack_correct(correct),
        log=rows,
        seconds=round(time.perf_counter() - start, 2),
        device=device_label(dev),
        torch_version=torch.__version__,
    )
