"""Landmark regularisation (seed 001): teach the supernet the stand-alone order of a few
architectures.

Landmarks come from a truth file (the stand-alone benchmark or a user's file), sorted worst to best.
Every step after warm-up draws one random pair (i < j, the paper's finding that one pair suffices)
among the landmarks the training schedule has unlocked and adds ``λ_t · max(0, L(x; a_j) −
L(x; a_i))``: a better landmark must not have the higher loss.
``L`` is the cross-entropy on a batch of *held-out* training images that the supernet loss never
sees. ``λ_t`` is 0 during warm-up, then rises along a cosine to ``λ_max`` (the paper's best
schedule; λ_max = 10 was its best value). With ``count`` a diverse subset is used: the paper's
Algorithm 1 keeps architectures whose Hamming distance from a random root exceeds a threshold;
over a fixed pool famc keeps, in a seeded random order, those at least ``distance`` genes from the
root and from every landmark kept so far.
"""

from __future__ import annotations

import math
import random
from typing import TYPE_CHECKING

import torch

from famc.data import ImageSet
from famc.errors import FamcError
from famc.evaluate.rank import Truth
from famc.space import Arch, SearchSpace

if TYPE_CHECKING:
    from famc.train.config import LandmarksConfig
    from famc.train.schedule import View


def holdout_split(train: ImageSet, fraction: float, seed: int) -> tuple[ImageSet, ImageSet]:
    """(images the supernet trains on, held-out images for the ranking loss), seeded."""
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + 7_919))
    cut = round(fraction * len(train))
    return train.subset(perm[cut:].sort().values), train.subset(perm[:cut].sort().values)


def select_diverse(
    space: SearchSpace, archs: list[Arch], count: int, distance: int, rng: random.Random
) -> list[int]:
    """Indices of ``count`` architectures pairwise at least ``distance`` genes apart, grown from a
    random root in a random order; raises when the pool has no such subset along that order."""
    order = list(range(len(archs)))
    rng.shuffle(order)
    kept = [order[0]]
    for i in order[1:]:
        if len(kept) == count:
            break
        if all(space.hamming(archs[i], archs[j]) >= distance for j in kept):
            kept.append(i)
    if len(kept) < count:
        raise FamcError(
            f"landmarks: only {len(kept)} of the truth file's {len(archs)} architectures are "
            f"{distance}+ genes apart (landmarks.count is {count}); lower landmarks.distance or "
            f"landmarks.count"
        )
    return sorted(kept)


class Landmarks:
    """The landmark set, its pair sampler and its regularisation schedule."""

    def __init__(
        self, cfg: LandmarksConfig, space: SearchSpace, total_steps: int, seed: int
    ) -> None:
        truth = Truth(cfg.truth, space)
        if cfg.count is not None and cfg.count > len(truth.archs):
            raise FamcError(
                f"landmarks.count is {cfg.count} but {cfg.truth} has {len(truth.archs)} results"
            )
        keep = list(range(len(truth.archs)))
        if cfg.count is not None:
            rng = random.Random(f"{seed}:landmarks")
            keep = select_diverse(space, truth.archs, cfg.count, cfg.distance, rng)
        ranked = sorted(keep, key=lambda i: (truth.top1[i], i))
        self.archs = [truth.archs[i] for i in ranked]  # worst first
        acc = [truth.top1[i] for i in ranked]
        self.pairs = [(i, j) for i in range(len(acc)) for j in range(i + 1, len(acc))
                      if acc[i] < acc[j]]  # fmt: skip
        if not self.pairs:
            raise FamcError(f"{cfg.truth}: the landmarks' accuracies are all equal; no order")
        self.warmup = round(cfg.warmup * total_steps)
        self.total, self.lambda_max = total_steps, cfg.lambda_max

    def weight(self, step: int) -> float:
        """λ at ``step``: 0 during warm-up, then cosine-increasing to λ_max at the last step."""
        if step < self.warmup:
            return 0.0
        progress = (step - self.warmup + 1) / max(1, self.total - self.warmup)
        return self.lambda_max * 0.5 * (1 - math.cos(math.pi * min(1.0, progress)))

    def pair(self, step: int, rng: random.Random, view: View) -> tuple[Arch, Arch, float] | None:
        """(worse, better, λ) for this step, both landmarks inside ``view`` (what the schedule has
        unlocked), or None while λ is 0 or no ordered pair is unlocked. Under progressive shrinking
        most landmarks stay locked until the last phases; ranking them earlier trains, at up to
        λ_max times the loss, the networks PS keeps for later (it cost the combined run 12 pt)."""
        lam = self.weight(step)
        if lam == 0:
            return None
        inside = [view.contains(a) for a in self.archs]
        pairs = [(i, j) for i, j in self.pairs if inside[i] and inside[j]]
        if not pairs:
            return None
        i, j = rng.choice(pairs)
        return self.archs[i], self.archs[j], lam


class RankBatches:
    """Held-out batches as a pure function of the step: a seeded reshuffle every pass, so a
    resumed run draws exactly the batches an uninterrupted one would."""

    def __init__(self, images: ImageSet, batch_size: int, seed: int) -> None:
        self.images, self.seed = images, seed
        self.batch = min(batch_size, len(images))
        self.per_pass = len(images) // self.batch
        self._pass = -1
        self._order = torch.empty(0, dtype=torch.int64)

    def __call__(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        n, i = divmod(step, self.per_pass)
        if n != self._pass:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + n + 17)
            self._pass, self._order = n, torch.randperm(len(self.images), generator=gen)
        idx = self._order[i * self.batch : (i + 1) * self.batch]
        return self.images.images[idx], self.images.labels[idx]
