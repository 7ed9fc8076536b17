"""Candidate plasticity training (seed 003, after NSAS): against multi-model forgetting, every step
also trains a few *constraint* sub-networks, the most mutually distant ones seen recently.

A pool keeps the last ``pool`` sampled sub-networks. The distance of two sub-networks is
``Σ_k |C_i^k − C_j^k|`` over the hidden (expanded) channel counts of every layer slot (0 where a
stage is shallower). As in the paper, the set is chosen by a surrogate of mutual distance: each
pool member's mean distance to its ``neighbours`` nearest others; the ``size`` highest form the
constraint set. A step's loss gives the sampled sub-networks and the constraint set ``1 − weight``
and ``weight`` of the weight the sampled ones alone would carry (0.5 / 0.5 by default).
"""

from __future__ import annotations

import random
from collections import deque
from typing import TYPE_CHECKING, Any

import torch

from famc.space import Arch, SearchSpace, describe
from famc.space.layers import stage_slots

if TYPE_CHECKING:
    from famc.train.config import CPTConfig


def channels(space: SearchSpace, arch: Arch) -> list[int]:
    """Hidden channels of every elastic layer slot, stage by stage (0 where inactive)."""
    p = space.preset
    mids = {layer.module: layer.mid_c for layer in describe(space, arch)}
    return [mids.get(module, 0) for modules in stage_slots(p) for module in modules]


def most_distant(space: SearchSpace, archs: list[Arch], size: int, neighbours: int) -> list[Arch]:
    """The ``size`` architectures of ``archs`` (duplicates ignored) with the largest mean
    channel distance to their ``neighbours`` nearest others; ties keep pool order."""
    unique = list(dict.fromkeys(archs))
    if len(unique) <= size:
        return unique
    c = torch.tensor([channels(space, a) for a in unique], dtype=torch.float64)
    dist = torch.cdist(c, c, p=1)
    dist.fill_diagonal_(float("inf"))
    k = min(neighbours, len(unique) - 1)
    novelty = dist.topk(k, dim=1, largest=False).values.mean(1)
    order = sorted(range(len(unique)), key=lambda i: (-float(novelty[i]), i))
    return [unique[i] for i in order[:size]]


class CPT:
    """The recent pool and the constraint set, updated after every step."""

    def __init__(self, cfg: CPTConfig, space: SearchSpace) -> None:
        self.cfg, self.space = cfg, space
        self.pool: deque[Arch] = deque(maxlen=cfg.pool)
        self.constraints: list[Arch] = []

    def pick(self, rng: random.Random) -> list[Arch]:
        """The constraint sub-networks this step trains (all of them unless ``per_step``)."""
        n = self.cfg.per_step
        if n is None or n >= len(self.constraints):
            return list(self.constraints)
        return rng.sample(self.constraints, n)

    def observe(self, sampled: list[Arch]) -> None:
        self.pool.extend(sampled)
        if len(self.pool) > self.cfg.size:  # a set of all we have seen constrains nothing
            self.constraints = most_distant(self.space, list(self.pool), self.cfg.size,
                                            self.cfg.neighbours)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"pool": [a.to_dict() for a in self.pool],
                "constraints": [a.to_dict() for a in self.constraints]}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.pool.clear()
        self.pool.extend(self.space.arch_from_dict(a) for a in state["pool"])
        self.constraints = [self.space.arch_from_dict(a) for a in state["constraints"]]
