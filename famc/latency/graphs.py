"""The small graphs a latency table times: each deployed layer alone, as the static block that ships.

``layer_module(spec)`` is the very class an extracted member is made of (``BLOCKS[kind].static``),
and the blocks of an architecture partition its whole network (the global pool belongs to
``final_expand`` or is a ``global_pool`` layer of its own, pooling layers are layers too), so their
latencies can be summed.
"""

from __future__ import annotations

import torch
from torch import nn

from famc.space import LayerSpec
from famc.supernet import BLOCKS


class CallProbe(nn.Module):
    """The cheapest graph that still runs one op: times the runtime's fixed cost per call.

    Every isolated layer pays that cost once, a whole network only once in total, so it is
    subtracted from each entry and the single remaining call is part of the fitted overhead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def layer_module(spec: LayerSpec) -> nn.Module:
    """A randomly initialised static block computing exactly the layer ``spec`` (eval mode)."""
    return BLOCKS[spec.kind].static(spec).eval()
