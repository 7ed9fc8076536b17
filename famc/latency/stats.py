"""The accuracy figures a latency table is judged by.

Implemented with numpy only (no scipy dependency for one rank correlation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np


class Accuracy(NamedTuple):
    mape: float
    within_10pct: float
    spearman: float


def ranks(x: Sequence[float] | np.ndarray) -> np.ndarray:
    """1-based ranks; tied values share their average rank (as Spearman's ρ requires)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    r = np.empty(a.size, dtype=np.float64)
    r[order] = np.arange(1, a.size + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=r)
    return sums[inverse] / counts[inverse]


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float:
    """Spearman's rank correlation: Pearson's r of the (tie-averaged) ranks."""
    if len(x) != len(y) or len(x) < 2:
        raise ValueError("spearman needs two equally long sequences of at least 2 values")
    rx, ry = ranks(x), ranks(y)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = float(np.sqrt((rx * rx).sum() * (ry * ry).sum()))
    return float((rx * ry).sum() / denom) if denom > 0 else 0.0


def accuracy(predicted: Sequence[float], measured: Sequence[float]) -> Accuracy:
    """MAPE, share within ±10 % and Spearman ρ of predictions against measurements."""
    p, m = np.asarray(predicted, dtype=np.float64), np.asarray(measured, dtype=np.float64)
    rel = np.abs(p - m) / m
    return Accuracy(float(rel.mean()), float((rel <= 0.10).mean()), spearman(p, m))
