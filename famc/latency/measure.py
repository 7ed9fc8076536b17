"""The one definition of latency famc uses everywhere: the median (and p90) wall time of one
inference call of a graph, on its runtime, called the way a user calls it.

For ONNX Runtime that is ``InferenceSession.run`` with a NumPy batch, the target's thread count and
default session options otherwise; the graph is the shipped ``model.onnx`` itself, or a layer graph
exported by the same function that exports members. Latency tables, their predictions, their
validation, the build's measurement of each member and the report all use this definition.

Calls are timed one at a time: after a warm-up, ``rounds`` rounds each run every graph of a set for
``block`` back-to-back calls, the graphs in a fresh random order each round, so a burst of load from
another process touches every graph a little rather than one a lot.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Call = Callable[[], object]  # one inference of one graph


@dataclass(frozen=True)
class Protocol:
    """How many calls are timed: ``rounds`` × ``block`` samples per graph after ``warmup`` calls."""

    warmup: int = 20
    rounds: int = 10
    block: int = 20

    @property
    def samples(self) -> int:
        return self.rounds * self.block


#: A member's shipped artifact: 500 timed calls after warm-up.
MEMBER_PROTOCOL = Protocol(warmup=50, rounds=25, block=20)


@dataclass(frozen=True)
class Timing:
    """Median and 90th percentile of one-call wall times, in ms, over ``n`` calls."""

    median_ms: float
    p90_ms: float
    n: int


def summarise(seconds: Sequence[float]) -> Timing:
    x = np.asarray(seconds, dtype=np.float64) * 1e3
    return Timing(float(np.median(x)), float(np.percentile(x, 90)), int(x.size))


def time_calls(
    calls: Sequence[Call],
    protocol: Protocol,
    rng: random.Random,
    advance: Callable[[int], None] | None = None,
) -> list[Timing]:
    """One ``Timing`` per call, measured together by ``protocol`` (see the module docstring)."""
    for call in calls:
        for _ in range(protocol.warmup):
            call()
    samples: list[list[float]] = [[] for _ in calls]
    order = list(range(len(calls)))
    clock = time.perf_counter
    for _ in range(protocol.rounds):
        rng.shuffle(order)
        for i in order:
            call, out = calls[i], samples[i]
            for _ in range(protocol.block):
                start = clock()
                call()
                out.append(clock() - start)
        if advance is not None:
            advance(len(calls))
    return [summarise(s) for s in samples]
