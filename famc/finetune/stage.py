"""Optional build stage between evaluate and ship: fine-tune each member against the member below.

    config → prepare → search → evaluate → [fine-tune] → ship → report

Each member above the smallest is its extracted static sub-network (BN re-calibrated, exactly as
it was scored), trained on the training split with ``finetune.method``'s loss against the *final*
model of the member below (fine-tuned itself when it is not the smallest), so the pairs that ship
are the pairs that were tuned. Afterwards BN is re-calibrated on the search's calibration subset and
the member is scored on the test split again. Ship then exports these weights, and the report shows
Top-1 and NFR before and after. Fine-tuned members are trained apart, so they no longer share
weights literally; the architectures still nest (CAS).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from famc.config import FinetuneConfig
from famc.data import ImageSet, to_input
from famc.errors import FamcError
from famc.evaluate.cache import CachedEvaluation
from famc.evaluate.stage import Evaluated, FamilyResult, MemberResult, family_result
from famc.finetune.losses import LOSSES, LossSettings
from famc.prepare import Prepared
from famc.supernet import fold_bn, recalibrate
from famc.train.optim import lr_at

MOMENTUM = 0.9


@dataclass(frozen=True)
class Finetuned:
    """The family before and after fine-tuning; ``models`` holds the fine-tuned members by name
    (the smallest is absent: it ships as searched)."""

    settings: FinetuneConfig
    before: FamilyResult
    evaluated: Evaluated  # the family after fine-tuning; the baseline as it was
    models: dict[str, nn.Module]
    images: int
    seconds: float


@torch.inference_mode()
def _logits(model: nn.Module, images: ImageSet, resolution: int, mean: tuple[float, ...],
            std: tuple[float, ...], batch: int) -> torch.Tensor:  # fmt: skip
    """The reference's logits on the training images, once: it is fixed while the target trains."""
    model.eval()
    return torch.cat([
        model(to_input(x, resolution, mean, std, channels_last=True))
        for x, _ in images.batches(batch)
    ])  # fmt: skip


def tune(model: nn.Module, ref_logits: torch.Tensor, train: ImageSet, resolution: int,
         p: Prepared, cfg: FinetuneConfig, seed: int) -> nn.Module:  # fmt: skip
    """Train ``model`` in place (BN in training mode, seeded batch order, cosine-decayed SGD) with
    ``cfg.method``'s loss toward ``ref_logits`` (one row per training image); returns it."""
    loss_fn = LOSSES[cfg.method]
    settings = LossSettings(cfg.alpha, cfg.beta, cfg.temperature)
    batch = min(cfg.batch_size, len(train))
    steps = len(train) // batch
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=MOMENTUM, nesterov=True)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    for epoch in range(cfg.epochs):
        order = torch.randperm(len(train), generator=gen)
        for i in range(steps):
            for group in opt.param_groups:
                group["lr"] = lr_at(epoch * steps + i, cfg.epochs * steps, 0, cfg.lr)
            idx = order[i * batch : (i + 1) * batch]
            x = to_input(train.images[idx], resolution, p.data.mean, p.data.std,
                         channels_last=True)  # fmt: skip
            loss = loss_fn(model(x), ref_logits[idx], train.labels[idx], settings)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model


def _test_vector(ev: CachedEvaluation, model: nn.Module, resolution: int) -> torch.Tensor:
    """Test-split correctness of a fine-tuned model, scored as the search scores (BN folded on a
    copy, so the shipped model keeps its BN)."""
    images = ev.splits["test"]
    scored = fold_bn(copy.deepcopy(model).to(ev.evaluator.device))
    return ev.evaluator.logits(scored, images, resolution).argmax(1).cpu() == images.labels


def finetune(p: Prepared, evaluated: Evaluated, ev: CachedEvaluation,
             log: Callable[[str], None]) -> Finetuned | None:  # fmt: skip
    """Fine-tune every member above the smallest, smallest first; None when not configured."""
    cfg = p.cfg.finetune
    if cfg is None:
        return None
    started = time.perf_counter()
    pool = p.data.train
    if not isinstance(pool, ImageSet):
        raise FamcError("finetune needs the training split in memory; streamed folders "
                        "(data.stream) serve search and evaluation only: remove `finetune`")  # fmt: skip
    train = pool if cfg.images is None else pool.subset(range(min(cfg.images, len(pool))))
    members = evaluated.family.members
    # fine-tuning runs on the CPU, wherever the search evaluated
    below_model = ev.evaluator.model(members[0].found.best.arch).cpu()
    after, models = [members[0]], {}
    for i, m in enumerate(members[1:], 1):
        arch, below = m.found.best.arch, members[i - 1].found.best.arch
        log(f"fine-tuning {m.plan.name} against {members[i - 1].plan.name} ({cfg.method}, "
            f"{cfg.epochs} epoch(s) of {len(train)} training images)")  # fmt: skip
        ref = _logits(below_model, train, below.resolution, p.data.mean, p.data.std,
                      p.cfg.evaluation.batch_size)  # fmt: skip
        model = tune(ev.evaluator.model(arch).cpu(), ref, train, arch.resolution, p, cfg,
                     seed=p.cfg.search.seed * 1000 + i)  # fmt: skip
        calib = [x.cpu() for x in ev.evaluator.inputs(ev.evaluator.calib, arch.resolution)]
        model = recalibrate(model, calib, ev.evaluator.bn_convention)
        models[m.plan.name] = model
        after.append(MemberResult(m.plan, m.found, _test_vector(ev, model, arch.resolution)))
        below_model = model
    return Finetuned(cfg, evaluated.family, Evaluated(family_result(after), evaluated.baseline),
                     models, len(train), round(time.perf_counter() - started, 1))  # fmt: skip
