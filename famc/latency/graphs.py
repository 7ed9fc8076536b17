"""The small graphs a latency table times: one deployed layer each, built from the static classes.

The split mirrors ``StaticMBV3.forward`` exactly (the global pool belongs to ``final_expand``, whose
signature carries the spatial size it pools over; ``flatten`` to ``feature_mix``), so the layers of
an architecture partition its whole network and their latencies can be summed.
"""

from __future__ import annotations

import torch
from torch import nn

from famc.space import LayerSpec
from famc.supernet.static import MBConv, activation, conv_bn_act


class _FinalExpand(nn.Module):
    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.conv = conv_bn_act(spec.in_c, spec.out_c, 1, 1, 1, spec.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).mean((2, 3), keepdim=True)


class _FeatureMix(nn.Module):
    def __init__(self, spec: LayerSpec) -> None:
        super().__init__()
        self.conv = nn.Conv2d(spec.in_c, spec.out_c, 1, bias=False)
        self.act = activation(spec.act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.act(self.conv(x)), 1)


class CallProbe(nn.Module):
    """The cheapest graph that still runs one op: times the runtime's fixed cost per call.

    Every isolated layer pays that cost once, a whole network only once in total, so it is
    subtracted from each entry and the single remaining call is part of the fitted overhead.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + 1.0


def layer_module(spec: LayerSpec) -> nn.Module:
    """A randomly initialised static module computing exactly the layer ``spec`` (eval mode)."""
    if spec.kind == "stem":
        module: nn.Module = conv_bn_act(
            spec.in_c, spec.out_c, spec.kernel, spec.stride, 1, spec.act
        )
    elif spec.kind == "mbconv":
        module = MBConv(spec)
    elif spec.kind == "final_expand":
        module = _FinalExpand(spec)
    elif spec.kind == "feature_mix":
        module = _FeatureMix(spec)
    else:
        module = nn.Linear(spec.in_c, spec.out_c)
    return module.eval()


def input_shape(spec: LayerSpec, batch: int) -> tuple[int, ...]:
    """The layer's input as the whole network feeds it (the classifier gets flattened features)."""
    if spec.kind == "classifier":
        return (batch, spec.in_c)
    return (batch, spec.in_c, spec.in_hw, spec.in_hw)
