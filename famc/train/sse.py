"""Sub-supernet enhancing (seed 003): extra steps for the regions of the space that are
under-trained.

The space is split into sub-supernets by the depths of its last ``stages`` stages (the paper splits
by the depths of stages 3 and 4). Throughout the run each sub-supernet's in-place distillation loss
is tracked (an exponential moving average over the sub-networks sampled in it); in the final
``fraction`` of the steps every step first draws a sub-supernet with probability proportional to
that loss and samples its sub-networks there, so sub-supernets whose networks lag the teacher get
more than their uniform share of steps.

One deviation from the paper, deliberately: its sub-supernets are separate weight copies
(few-shot NAS), which would turn one checkpoint into several and every downstream stage into a
router. famc keeps one weight set, so the enhancing phase re-allocates steps rather than forking
weights; the checkpoint stays a single supernet that ``famc build`` and ``famc rank`` use as is.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from famc.space import Arch, SearchSpace
from famc.train.schedule import Unlocked, View

if TYPE_CHECKING:
    from famc.train.config import SSEConfig

EMA = 0.9  # weight of the old average per observation: ~10 recent sub-networks per group


class SSE:
    """Per-group loss averages and the group drawn for each enhancing step."""

    def __init__(self, cfg: SSEConfig, space: SearchSpace, total_steps: int) -> None:
        self.stages = list(range(space.num_stages - cfg.stages, space.num_stages))
        self.start = round((1 - cfg.fraction) * total_steps)
        self.loss: dict[tuple[int, ...], float] = {}

    def group(self, arch: Arch) -> tuple[int, ...]:
        return tuple(arch.d[s] for s in self.stages)

    def groups(self, view: Unlocked) -> list[tuple[int, ...]]:
        """Every sub-supernet the view admits, in a fixed order."""
        out: list[tuple[int, ...]] = [()]
        for s in self.stages:
            out = [(*g, d) for g in out for d in view.depths[s]]
        return out

    def narrow(self, view: View, step: int, rng: random.Random) -> View:
        """The sub-supernet to sample from this step (the whole view before the phase)."""
        assert isinstance(view, Unlocked), "the config refuses sse without per-layer choices"
        if step < self.start:
            return view
        groups = self.groups(view)
        fallback = max(self.loss.values(), default=1.0)  # unseen groups: explore them
        weights = [self.loss.get(g, fallback) for g in groups]
        chosen = rng.choices(groups, weights=weights)[0]
        for s, d in zip(self.stages, chosen, strict=True):
            view = view.with_depth(s, d)
        return view

    def observe(self, sampled: list[Arch], losses: list[float]) -> None:
        for arch, loss in zip(sampled, losses, strict=True):
            g = self.group(arch)
            self.loss[g] = loss if g not in self.loss else EMA * self.loss[g] + (1 - EMA) * loss

    def state_dict(self) -> dict[str, Any]:
        return {"groups": [list(g) for g in self.loss], "loss": list(self.loss.values())}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss = {
            tuple(g): float(v) for g, v in zip(state["groups"], state["loss"], strict=True)
        }
