"""Which part of the space a training step may sample: the sandwich rule's whole space, or
Once-for-All's progressive shrinking (PS) and its per-stage variant APS (seed 003).

A schedule is a list of phases, each ending at a fraction of the run's optimizer steps and giving
per-stage *floors* (minimum kernel, depth and expand ratio); a phase unlocks every choice at or above
its floors. PS (OFA) trains the largest network, then unlocks the kernel, then depth one value at a
time, then expand one value at a time, each phase still distilling from the largest. APS gives each
stage its own depth schedule; its default unlocks the last stage's depth at once, the ordering the
APS paper found best (sub-networks shallow in the last stage are otherwise under-trained).
Resolution is elastic throughout, as in OFA. The phase is a pure function of the step, so resume
needs no extra state.

The sandwich rule has no phases: every step may sample the whole space. Phases (and the attentive
sampler's FLOPs prior and SSE's depth groups, which read the same per-stage choice lists) need
``Unlocked``'s picture of a space: one preset-wide list of depths, kernels and expand ratios, drawn
per layer, and no elastic widths (:func:`per_layer_choices`). Other spaces (AttentiveNAS,
OFA-ResNet) train under the sandwich rule only, through :class:`WholeSpace`.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import Field

from famc.errors import FamcError
from famc.io import Strict
from famc.space import Arch, SearchSpace

_Choice = TypeVar("_Choice", int, float)  # a gene's choices: depths and kernels int, expands float

PerStage = int | list[int]


@dataclass(frozen=True)
class Unlocked:
    """A product set of architectures: allowed resolutions and, per stage, depths, kernels and
    expand ratios (every choice sorted ascending)."""

    resolutions: tuple[int, ...]
    depths: tuple[tuple[int, ...], ...]
    kernels: tuple[tuple[int, ...], ...]
    expands: tuple[tuple[float, ...], ...]

    @classmethod
    def full(cls, space: SearchSpace) -> Unlocked:
        p, n = space.preset, space.num_stages
        return cls(p.resolutions, (p.depth_choices,) * n, (p.kernel_choices,) * n,
                   (p.expand_choices,) * n)  # fmt: skip

    def sample(self, rng: random.Random) -> Arch:
        """Every gene uniformly from its allowed values; on the full space this draws exactly
        what ``SearchSpace.sample`` draws from the same generator state."""
        ks: list[tuple[int, ...]] = []
        es: list[tuple[float, ...]] = []
        for depths, kernels, expands in zip(self.depths, self.kernels, self.expands, strict=True):
            d = rng.choice(depths)
            ks.append(tuple(rng.choice(kernels) for _ in range(d)))
            es.append(tuple(rng.choice(expands) for _ in range(d)))
        return Arch(ks=tuple(ks), e=tuple(es), resolution=rng.choice(self.resolutions))

    def _uniform(self, pick: Callable[[tuple[Any, ...]], Any]) -> Arch:
        stages = zip(self.depths, self.kernels, self.expands, strict=True)
        ks, es = zip(*(((pick(k),) * pick(d), (pick(e),) * pick(d)) for d, k, e in stages),
                     strict=True)  # fmt: skip
        return Arch(ks=tuple(ks), e=tuple(es), resolution=pick(self.resolutions))

    def smallest(self) -> Arch:
        return self._uniform(min)

    def largest(self) -> Arch:
        return self._uniform(max)

    def contains(self, arch: Arch) -> bool:
        if arch.resolution not in self.resolutions:
            return False
        stages = zip(arch.ks, arch.e, self.depths, self.kernels, self.expands, strict=True)
        return all(
            len(ks) in d and set(ks) <= set(k) and set(es) <= set(e) for ks, es, d, k, e in stages
        )

    def with_depth(self, stage: int, depth: int) -> Unlocked:
        """The same set with ``stage``'s depth fixed (sub-supernet enhancing's groups)."""
        depths = list(self.depths)
        depths[stage] = (depth,)
        return replace(self, depths=tuple(depths))


def per_layer_choices(space: SearchSpace) -> bool:
    """Whether ``Unlocked`` describes ``space`` exactly: every stage takes the preset-wide depth
    and expand choices, kernel and expand ratio are drawn per layer, and no width is elastic (the
    OFA-MobileNetV3 family). Otherwise ``Unlocked.full`` would draw architectures outside it."""
    p = space.preset
    return (
        p.genes_per == "layer"
        and not space.widths
        and all(p.depths(s) == p.depth_choices and p.expands(s) == p.expand_choices
                for s in p.stages)
    )  # fmt: skip


@dataclass(frozen=True)
class WholeSpace:
    """The whole of a space ``Unlocked`` cannot describe (per-stage choices, per-stage genes,
    elastic widths): the sandwich rule's view of it, delegating to the space itself."""

    space: SearchSpace

    def sample(self, rng: random.Random) -> Arch:
        return self.space.sample(rng)

    def smallest(self) -> Arch:
        return self.space.smallest()

    def largest(self) -> Arch:
        return self.space.largest()

    def contains(self, arch: Arch) -> bool:
        try:
            self.space.validate(arch)
        except FamcError:
            return False
        return True


#: What a training step may sample from.
View = Unlocked | WholeSpace


def whole(space: SearchSpace) -> View:
    """The whole space as a view; ``Unlocked.full`` where it applies, so such runs sample exactly
    what they did before ``WholeSpace`` existed."""
    return Unlocked.full(space) if per_layer_choices(space) else WholeSpace(space)


class Phase(Strict):
    """One phase: it ends once ``until`` of the run's steps are done; every stage samples the
    choices at or above its floors (one value for all stages, or one per stage)."""

    until: float = Field(gt=0, le=1)
    kernel: PerStage
    depth: PerStage
    expand: PerStage

    def floors(self, gene: str, stages: int) -> list[int]:
        value = getattr(self, gene)
        return [value] * stages if isinstance(value, int) else list(value)

    def unlocked(self, space: SearchSpace) -> Unlocked:
        p, n = space.preset, space.num_stages

        def above(choices: tuple[_Choice, ...], gene: str) -> tuple[tuple[_Choice, ...], ...]:
            return tuple(tuple(c for c in choices if c >= f) for f in self.floors(gene, n))

        return Unlocked(p.resolutions, above(p.depth_choices, "depth"),
                        above(p.kernel_choices, "kernel"), above(p.expand_choices, "expand"))  # fmt: skip


# Once-for-All's phase lengths in epochs: the largest network 180, elastic kernel 120, then each
# elastic dimension in steps of one choice: 25 epochs per intermediate step, 120 for the last.
OFA_EPOCHS = {"largest": 180, "kernel": 120, "step": 25, "last": 120}


def ps_phases(space: SearchSpace, last_stage_first: bool = False) -> list[Phase]:
    """OFA's progressive shrinking for ``space``; with ``last_stage_first`` (APS) the last stage's
    depth unlocks completely in the first depth phase."""
    p, n = space.preset, space.num_stages
    k, d, e = max(p.kernel_choices), max(p.depth_choices), max(p.expand_choices)
    rows: list[tuple[int, int, list[int], float]] = [(OFA_EPOCHS["largest"], k, [d] * n, e)]
    k = min(p.kernel_choices)
    rows.append((OFA_EPOCHS["kernel"], k, [d] * n, e))
    depths = sorted(p.depth_choices, reverse=True)[1:]
    for i, floor in enumerate(depths):
        per_stage = [floor] * n
        if last_stage_first:
            per_stage[-1] = min(p.depth_choices)
        rows.append((OFA_EPOCHS["last" if i == len(depths) - 1 else "step"], k, per_stage, e))
    expands = sorted(p.expand_choices, reverse=True)[1:]
    for i, e_floor in enumerate(expands):
        last = i == len(expands) - 1
        rows.append(
            (OFA_EPOCHS["last" if last else "step"], k, [min(p.depth_choices)] * n, e_floor)
        )
    total = sum(r[0] for r in rows)
    done = 0
    phases = []
    for epochs, kernel, depth, expand in rows:
        done += epochs
        phases.append(
            Phase(until=round(done / total, 4), kernel=kernel, depth=depth, expand=expand)
        )
    return phases


def _sandwich(space: SearchSpace) -> list[Phase]:
    """No phases: the whole space throughout, on any space."""
    return []


#: Schedule kind → its default phases for a space.
SCHEDULES: dict[str, Callable[[SearchSpace], list[Phase]]] = {
    "sandwich": _sandwich,
    "ps": ps_phases,
    "aps": lambda space: ps_phases(space, last_stage_first=True),
}


def check_phases(space: SearchSpace, phases: list[Phase]) -> None:
    """Raise ``ValueError`` naming the phase and gene unless every floor is a choice of the space,
    floors never rise (a schedule only unlocks) and the phases end in order at 1 (no phases: the
    whole space throughout)."""
    p, n = space.preset, space.num_stages
    choices = {"kernel": p.kernel_choices, "depth": p.depth_choices, "expand": p.expand_choices}
    for i, phase in enumerate(phases):
        where = f"phases[{i}]"
        if i and phase.until <= phases[i - 1].until:
            raise ValueError(f"{where}.until must exceed the previous phase's ({phase.until})")
        for gene, allowed in choices.items():
            floors = phase.floors(gene, n)
            if len(floors) != n or not set(floors) <= set(allowed):
                raise ValueError(
                    f"{where}.{gene} must be one of {list(allowed)} or a list of {n} of them "
                    f"(one per stage), got {getattr(phase, gene)}"
                )
            if i and any(a > b for a, b in zip(floors, phases[i - 1].floors(gene, n), strict=True)):
                raise ValueError(f"{where}.{gene} re-locks choices a previous phase unlocked")
    if phases and phases[-1].until != 1:
        raise ValueError(f"the last phase must end at until: 1 (got {phases[-1].until})")


class Schedule:
    """The unlocked set at every step of a run of ``total_steps`` optimizer steps; without phases,
    the whole space at every step."""

    def __init__(self, space: SearchSpace, phases: list[Phase], total_steps: int) -> None:
        self.ends = [round(ph.until * total_steps) for ph in phases] or [total_steps]
        self.views: list[View] = [ph.unlocked(space) for ph in phases] or [whole(space)]

    def phase(self, step: int) -> int:
        return next((i for i, end in enumerate(self.ends) if step < end), len(self.ends) - 1)

    def view(self, step: int) -> View:
        return self.views[self.phase(step)]
