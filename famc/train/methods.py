"""The training methods a config enables, composed in one place.

Every step the loop asks :class:`Methods` for a :class:`StepPlan` and reports the step's losses
back; each method is one component with one hook:

- the **schedule** (sandwich / PS / APS) gives the unlocked set at this step (the sandwich: the
  whole space), whose smallest is the sandwich's smallest (the largest is always the whole space's
  largest, the teacher);
- **SSE** narrows the set the sampled networks come from to one sub-supernet (enhancing phase);
- the **sampler** (uniform / attentive) picks the sampled networks from that set;
- **CPT** adds its constraint networks and splits the sampled networks' loss weight with them;
- **landmarks** add one ranked pair (of networks the schedule has unlocked) and its weight λ_t.

``observe`` feeds the sampled networks and their losses to the stateful components (CPT's pool,
SSE's per-group losses); ``state_dict`` gathers their state for the checkpoint.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from famc.space import Arch, SearchSpace
from famc.train.config import TrainConfig
from famc.train.cpt import CPT
from famc.train.landmarks import Landmarks
from famc.train.sampler import SAMPLERS, LossFn
from famc.train.schedule import SCHEDULES, Schedule
from famc.train.sse import SSE


@dataclass(frozen=True)
class StepPlan:
    """What one optimizer step trains. ``archs[0]`` is the largest (labels, dropout; its output is
    the teacher); every other network is distilled from it with its loss weight."""

    archs: tuple[Arch, ...]
    weights: tuple[float, ...]
    n_sampled: int  # archs[1 : 1 + n_sampled] are the sampled networks
    pair: tuple[Arch, Arch] | None = None  # landmarks (worse, better)
    rank_weight: float = 0.0

    @property
    def sampled(self) -> list[Arch]:
        return list(self.archs[1 : 1 + self.n_sampled])

    @property
    def passes(self) -> int:
        """Sub-network forward+backward passes this step costs."""
        return len(self.archs) + (2 if self.pair else 0)


class Methods:
    def __init__(self, cfg: TrainConfig, space: SearchSpace, total_steps: int) -> None:
        self.cfg, self.space = cfg, space
        phases = cfg.schedule.phases or SCHEDULES[cfg.schedule.kind](space)
        self.schedule = Schedule(space, phases, total_steps)
        self.sampler = SAMPLERS[cfg.sampler](cfg, space)
        self.sse = SSE(cfg.sse, space, total_steps) if cfg.sse else None
        self.cpt = CPT(cfg.cpt, space) if cfg.cpt else None
        self.landmarks = (
            Landmarks(cfg.landmarks, space, total_steps, cfg.seed) if cfg.landmarks else None
        )

    def plan(self, step: int, rng: random.Random, loss: LossFn) -> StepPlan:
        view = self.schedule.view(step)
        pool = self.sse.narrow(view, step, rng) if self.sse else view
        n = self.cfg.num_random
        sampled = self.sampler.sample(pool, rng, n, loss)
        archs = [self.space.largest(), *sampled, view.smallest()]
        weights = [1.0] * len(archs)
        if self.cpt is not None and (constraints := self.cpt.pick(rng)):
            share = self.cpt.cfg.weight
            weights[1 : 1 + n] = [1 - share] * n
            weights += [share * n / len(constraints)] * len(constraints)
            archs += constraints
        pair = self.landmarks.pair(step, rng, view) if self.landmarks else None
        return StepPlan(tuple(archs), tuple(weights), n,
                        None if pair is None else pair[:2], 0.0 if pair is None else pair[2])  # fmt: skip

    def observe(self, plan: StepPlan, losses: list[float]) -> None:
        """``losses``: each network's unweighted loss, in ``plan.archs`` order, all ranks'."""
        if self.cpt is not None:
            self.cpt.observe(plan.sampled)
        if self.sse is not None:
            self.sse.observe(plan.sampled, losses[1 : 1 + plan.n_sampled])

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"sampler": self.sampler.state_dict()}
        if self.cpt is not None:
            state["cpt"] = self.cpt.state_dict()
        if self.sse is not None:
            state["sse"] = self.sse.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sampler.load_state_dict(state["sampler"])
        if self.cpt is not None:
            self.cpt.load_state_dict(state["cpt"])
        if self.sse is not None:
            self.sse.load_state_dict(state["sse"])
