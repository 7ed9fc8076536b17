"""From layer latencies to a network's: the correction a table fits on whole networks, and how a
fit is scored on networks it never saw.

A network's latency is not the sum of its layers' latencies timed alone: each layer graph pays the
runtime's per-call cost (a whole network pays it once), and layers fuse or share caches inside a
network. So a prediction is ``intercept + Σ_term coef_term · Σ_layers (median - call_overhead)``
over the terms of ``LatencyTable.terms`` (one per block kind of the searchable stages, one for the
fixed stem and head), with the intercept and the coefficients fitted (ridge regression towards the
plain sum, so a term the fit set cannot pin down keeps a coefficient near 1) on one set of whole
sub-networks, and judged on another.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from famc.latency.stats import accuracy

RIDGE = 1e-3  # shrinkage towards the plain sum, per fitted network, on standardised terms


class Correction(BaseModel):
    """``intercept_ms + Σ coef[kind] · (layer sum of that kind, net of the per-call cost)``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    intercept_ms: float = Field(allow_inf_nan=False)
    per_kind: dict[str, float]

    @classmethod
    def plain(cls, call_overhead_ms: float) -> Correction:
        """The unfitted predictor: the layer sum plus one per-call cost."""
        return cls(intercept_ms=call_overhead_ms, per_kind={})

    def apply(self, terms: Mapping[str, float]) -> float:
        return self.intercept_ms + sum(self.per_kind.get(k, 1.0) * v for k, v in terms.items())


def fit_correction(
    terms: Sequence[Mapping[str, float]], measured_ms: Sequence[float], call_overhead_ms: float
) -> Correction:
    """Ridge fit of the correction on whole networks' measured medians (see the module doc)."""
    kinds = sorted({k for t in terms for k in t})
    x = np.array([[1.0] + [t.get(k, 0.0) for k in kinds] for t in terms], dtype=np.float64)
    y = np.asarray(measured_ms, dtype=np.float64)
    prior = np.array([call_overhead_ms] + [1.0] * len(kinds))
    scale = np.sqrt((x * x).mean(axis=0))
    scale[scale == 0] = 1.0
    z = x / scale
    lam = RIDGE * len(y)
    beta = np.linalg.solve(z.T @ z + lam * np.eye(z.shape[1]), z.T @ y + lam * prior * scale)
    beta = beta / scale
    return Correction(intercept_ms=round(float(beta[0]), 6),
                      per_kind={k: round(float(b), 6) for k, b in zip(kinds, beta[1:], strict=True)})  # fmt: skip


class Score(BaseModel):
    """How predictions matched measured medians of networks the fit did not see."""

    model_config = ConfigDict(extra="forbid", strict=True)

    mape: float = Field(ge=0, allow_inf_nan=False)
    within_10pct: float = Field(ge=0, le=1)
    spearman: float = Field(ge=-1, le=1)
    max_error_pct: float = Field(ge=0, allow_inf_nan=False)


def score(predicted: Sequence[float], measured: Sequence[float]) -> Score:
    acc = accuracy(predicted, measured)
    p, m = np.asarray(predicted), np.asarray(measured)
    worst = float(np.max(np.abs(p - m) / m)) * 100
    return Score(mape=round(acc.mape, 4), within_10pct=round(acc.within_10pct, 4),
                 spearman=round(acc.spearman, 4), max_error_pct=round(worst, 2))  # fmt: skip
