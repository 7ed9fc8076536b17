"""Racing: stop evaluating a candidate once the first images show it is worse than the parents.

Most candidates of an evolutionary search never become parents. On the first slice of the search
split, a paired comparison with the weakest current parent (the same images for both, so what the
two models share cancels) already separates most of them: a candidate whose per-sample reward is
below the bar's by more than ``z`` standard errors is stopped there. Every other candidate is
evaluated on the whole split, so every survivor's score, and so every parent and every chosen
member, is exactly what exhaustive evaluation gives; stopped candidates keep a partial score that
says how many images it rests on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from famc.metrics import per_sample_reward


@dataclass(frozen=True)
class Race:
    """The decision after the first ``images`` samples, with everything it needs (it is plain data,
    so evaluation workers in other processes can apply it)."""

    images: int
    bar: torch.Tensor  # per-sample reward of the weakest parent on the first ``images``
    refs: tuple[torch.Tensor, ...]  # the references' correctness on the first ``images``
    lambda1: float
    lambda2: float
    z: float

    @classmethod
    def against(cls, bar: torch.Tensor, refs: Sequence[torch.Tensor], images: int,
                lambda1: float, lambda2: float, z: float) -> Race:  # fmt: skip
        """A race against the bar's full correctness vector ``bar`` (references: full vectors)."""
        head = tuple(r[:images] for r in refs)
        return cls(images, per_sample_reward(bar[:images], head, lambda1, lambda2), head,
                   lambda1, lambda2, z)  # fmt: skip

    def keep_going(self, prefix: torch.Tensor) -> bool:
        """False when ``prefix`` (the candidate's first ``images`` results) is confidently worse
        than the bar: mean paired difference + z · standard error < 0."""
        d = per_sample_reward(prefix[: self.images], self.refs, self.lambda1, self.lambda2)
        d = d - self.bar
        n = d.numel()
        se = d.std().item() / math.sqrt(n) if n > 1 else 0.0
        return d.mean().item() + self.z * se >= 0
