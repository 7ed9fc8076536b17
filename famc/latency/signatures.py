"""Every layer a search space can deploy, enumerated analytically.

A latency table is only useful if it covers the whole space, and sampling can miss rare layers, so
the set is derived from the preset: per resolution, the fixed layers plus, for every stage and layer
position, each reachable input shape × kernel × expand. Positions after the first in a stage share
one input shape, so the count grows with stages × kernels × expands, not with depth.
"""

from __future__ import annotations

from famc.space import Arch, LayerSpec, SearchSpace, describe


def all_signatures(space: SearchSpace) -> dict[str, LayerSpec]:
    """``signature -> LayerSpec`` for every layer any architecture of ``space`` can contain.

    Reuses ``describe`` on architectures that put each (kernel, expand) at every layer position,
    so the shapes and flags can never drift from what ``describe`` produces for real archs.
    """
    p = space.preset
    n, depth = space.num_stages, p.max_depth
    out: dict[str, LayerSpec] = {}
    for r in p.resolutions:
        for k in p.kernel_choices:
            for e in p.expand_choices:
                # Every layer at max depth: covers position 0 (stage entry) and positions ≥ 1
                # (all share the post-stride shape); the fixed layers come along.
                arch = Arch(ks=((k,) * depth,) * n, e=((e,) * depth,) * n, resolution=r)
                for layer in describe(space, arch):
                    out.setdefault(layer.signature(), layer)
    return dict(sorted(out.items()))
