"""A generation of candidates evaluated as one prefix tree: layers they share run once.

An evolutionary search proposes mutants and crossovers of a few parents, so a generation's
candidates often begin with the same deployed layers, and all of them with the same stem at each
resolution. Same resolution and same ``LayerSpec`` (kind, shapes, kernel, supernet slot) means the
same weights, and a layer's re-calibrated statistics and outputs depend only on the layers before
it: the candidates form a tree whose every node is calibrated and run once per batch. A
depth-first walk per batch holds one path's activations, so memory stays bounded (streamed sets
included), and every candidate's logits equal those of its own forward pass, bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from famc.space import LayerSpec
from famc.supernet import BNConvention, StaticNet, calibrating, fold_bn

#: Receives (candidate index, logits) for every batch a candidate is run on, in batch order.
Sink = Callable[[int, torch.Tensor], None]


@dataclass
class Node:
    """One deployed layer after a given prefix; ``ends`` are the candidates it is the last layer
    of, ``through`` every candidate whose path passes through it."""

    layer: nn.Module
    children: dict[LayerSpec, Node] = field(default_factory=dict)
    ends: list[int] = field(default_factory=list)
    through: set[int] = field(default_factory=set)


class PrefixTree:
    """The sub-networks of candidates at one resolution, merged where their first layers agree."""

    def __init__(self) -> None:
        self.root = Node(nn.Identity())
        self.nodes: list[Node] = []

    def add(self, index: int, specs: Sequence[LayerSpec], net: StaticNet) -> None:
        """Add candidate ``index``: its deployed layers ``specs`` and their extracted modules."""
        node = self.root
        for spec, layer in zip(specs, net.layers, strict=True):
            if spec not in node.children:
                node.children[spec] = Node(layer)
                self.nodes.append(node.children[spec])
            node = node.children[spec]
            node.through.add(index)
        node.ends.append(index)

    @torch.no_grad()
    def calibrate(self, batches: Iterable[torch.Tensor], convention: BNConvention) -> None:
        """Re-estimate every node's BN statistics on ``batches`` (each node once), then fold."""
        layers = nn.ModuleList(n.layer for n in self.nodes)
        with calibrating(layers, convention):
            for x in batches:
                self._walk(self.root, x, None, lambda *_: None)
        for n in self.nodes:
            fold_bn(n.layer).eval()

    @torch.inference_mode()
    def predict(self, batches: Iterable[torch.Tensor], first: int,
                active: Callable[[int], set[int]], sink: Sink) -> None:  # fmt: skip
        """Run batch ``first``, ``first + 1``, … through the subtrees of the candidates
        ``active(batch)`` names, handing each candidate's logits to ``sink``."""
        for i, x in enumerate(batches, first):
            self._walk(self.root, x, active(i), sink)

    def _walk(self, node: Node, x: torch.Tensor, active: set[int] | None, sink: Sink) -> None:
        for child in node.children.values():
            if active is not None and not child.through & active:
                continue
            y = child.layer(x)
            for j in child.ends:
                if active is None or j in active:
                    sink(j, y)
            self._walk(child, y, active, sink)
