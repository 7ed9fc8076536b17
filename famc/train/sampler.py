"""Which sub-networks a sandwich step trains between the largest and the smallest.

A sampler is a strategy object so attentive sampling (BestUp/WorstUp), landmark-aware or
progressive-shrinking schedules can plug into the same training loop: the loop only calls
``sample(space, rng, epoch, n)``.
"""

from __future__ import annotations

import random
from typing import Protocol

from famc.space.arch import Arch
from famc.space.space import SearchSpace


class Sampler(Protocol):
    def sample(self, space: SearchSpace, rng: random.Random, epoch: int, n: int) -> list[Arch]:
        """``n`` architectures to train this step (besides the largest and the smallest)."""
        ...


class UniformSampler:
    """Every gene uniformly at random (the sandwich rule's default)."""

    def sample(self, space: SearchSpace, rng: random.Random, epoch: int, n: int) -> list[Arch]:
        return [space.sample(rng) for _ in range(n)]


SAMPLERS: dict[str, type[Sampler]] = {"uniform": UniformSampler}
