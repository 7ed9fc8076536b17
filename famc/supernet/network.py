"""The elastic supernet of any preset: one module per slot of ``famc.space.slots``.

Modules are registered under the attribute paths the preset names (``first_conv``, ``blocks.N``,
``classifier``: Once-for-All's layout), so OFA state dicts load as they are. ``set_active(arch)``
picks the sub-network ``forward`` runs; ``extract(arch)`` returns it as a ``StaticNet``.
"""

from __future__ import annotations

import torch
from torch import nn

from famc.space import Arch, LayerSpec, SearchSpace, describe, slots
from famc.supernet.elastic import BLOCKS, ElasticBlock
from famc.supernet.static import StaticNet


class ElasticNet(nn.Module):
    """Weight-sharing supernet: every sub-network of ``space`` runs on slices of its weights."""

    def __init__(self, space: SearchSpace) -> None:
        super().__init__()
        self.space = space
        self._slots: dict[str, ElasticBlock] = {}
        for slot in slots(space):
            block = BLOCKS[slot.layer.kind](slot)
            self._register(slot.layer.module, block)
            self._slots[slot.layer.module] = block
        self._init_weights()
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = space.preset.bn_momentum, space.preset.bn_eps
        self.set_active(space.largest())

    def _register(self, path: str, block: ElasticBlock) -> None:
        """``name`` becomes an attribute, ``name.N`` the N-th entry of a ``ModuleList``."""
        name, _, index = path.partition(".")
        if not index:
            self.add_module(name, block)
            return
        if not hasattr(self, name):
            self.add_module(name, nn.ModuleList())
        group = getattr(self, name)
        if int(index) != len(group):
            raise ValueError(f"{self.space.name}: slot {path} out of order (expected {len(group)})")
        group.append(block)

    def _init_weights(self) -> None:
        """OFA's ``he_fout`` init, so from-scratch training starts where OFA's does (elastic convs
        initialise themselves the same way)."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                bound = 1.0 / m.weight.size(1) ** 0.5
                nn.init.uniform_(m.weight, -bound, bound)
                nn.init.zeros_(m.bias)

    # --- running a sub-network -----------------------------------------------------------------
    def set_active(self, arch: Arch) -> None:
        self.active = self.space.validate(arch)
        self._layers: list[LayerSpec] = describe(self.space, arch)

    def forward(self, x: torch.Tensor, dropout_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the active sub-network; ``dropout_mask`` (already scaled by 1/(1-p)) multiplies
        the classifier's input (its first columns when that width is elastic) — the trainer draws
        it so that it is the same under DDP."""
        *body, head = self._layers
        for spec in body:
            x = self._slots[spec.module](x, spec)
        if dropout_mask is not None:
            x = x * dropout_mask[:, : x.size(1)]
        return self._slots[head.module](x, head)

    # --- extraction ----------------------------------------------------------------------------
    @torch.no_grad()
    def extract(self, arch: Arch) -> StaticNet:
        """A static model holding its own copies of ``arch``'s weights, in eval mode.

        Each slot's block builds its static twin on the meta device and fills it by assignment:
        no random init, no deep copy of the supernet, one clone per tensor.
        """
        layers = describe(self.space, self.space.validate(arch))
        model = StaticNet([self._slots[spec.module].extract(spec) for spec in layers])
        unfilled = [n for n, t in model.state_dict().items() if t.is_meta]
        if unfilled:
            raise RuntimeError(f"extraction left {unfilled[0]} unfilled ({len(unfilled)} in all)")
        p = self.space.preset
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.momentum, m.eps = p.bn_momentum, p.bn_eps
        return model.eval()


def static_model(space: SearchSpace, arch: Arch) -> StaticNet:
    """An uninitialised (meta-device) static model of ``arch``, to be filled from a state dict."""
    with torch.device("meta"):
        return StaticNet([BLOCKS[spec.kind].static(spec) for spec in describe(space, arch)])
