"""Every layer a search space can deploy, enumerated analytically.

A latency table is only useful if it covers the whole space, and sampling can miss rare layers, so
the set is derived from the preset: walking the network in order with the set of input shapes
(size × width) each part can receive, every fixed layer at each width it can take and, for every
stage, its first layer and (when it can be deeper) a later layer at each reachable input, width,
kernel and expand ratio. Later positions of a stage share one input shape, so the count grows with
stages × kernels × expands × widths, not with depth.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import product

from famc.space import LayerDef, LayerSpec, Preset, SearchSpace, StageSpec
from famc.space.layers import fixed_layer, next_input, output_widths, stage_layer, stage_slots


def _stage_layers(p: Preset, stage: StageSpec, slots: tuple[str, ...], hw: int, c: int
                  ) -> Iterator[tuple[LayerSpec, ...]]:  # fmt: skip
    """A stage's first layer, and a later one when it can be deeper, for every width, kernel and
    expand ratio it can take after an input of size ``hw`` and width ``c``."""
    for w, k, e in product(output_widths(stage, c), p.kernel_choices, p.expands(stage)):
        first = stage_layer(p, stage, 0, hw, c, w, k, e, slots[0])
        if len(slots) == 1:
            yield (first,)
        else:
            yield first, stage_layer(p, stage, 1, *next_input(first), w, k, e, slots[1])


def all_signatures(space: SearchSpace) -> dict[str, LayerSpec]:
    """``signature -> LayerSpec`` for every layer any architecture of ``space`` can contain.

    Builds each layer with the same functions ``describe`` uses, so the shapes and flags can never
    drift from what ``describe`` produces for real archs.
    """
    p = space.preset
    modules = iter(stage_slots(p))
    inputs = {(r, p.in_channels) for r in p.resolutions}
    found: list[LayerSpec] = []
    for part in p.parts:
        if isinstance(part, LayerDef):
            layers = [fixed_layer(part, hw, c, w) for hw, c in inputs
                      for w in output_widths(part, c)]  # fmt: skip
            found += layers
            inputs = {next_input(layer) for layer in layers}
            continue
        slots = next(modules)
        groups = [g for hw, c in inputs for g in _stage_layers(p, part, slots, hw, c)]
        found += [layer for g in groups for layer in g]
        skipped = inputs if min(p.depths(part)) == 0 else set()
        inputs = {next_input(g[0]) for g in groups} | skipped
    return dict(sorted({layer.signature(): layer for layer in reversed(found)}.items()))
