"""The learning-rate schedule and weight-decay grouping every famc training run uses."""

from __future__ import annotations

import math
from typing import Any

from torch import nn


def lr_at(step: int, total: int, warmup: int, base_lr: float) -> float:
    """Linear warm-up then cosine decay to zero."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * base_lr * (1 + math.cos(math.pi * progress))


def param_groups(net: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay conv/linear weights only; BN affine, biases and kernel transforms are not decayed."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in net.named_parameters():
        (decay if p.dim() > 1 and not name.endswith("_matrix") else no_decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
