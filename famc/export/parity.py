"""Tensor-level parity between a PyTorch reference and an exported artifact, and the policy that
judges it.

Stricter than "it converted": by default every sample's top-1 must agree *and* the max absolute
logit error stay under ``atol`` (1e-4 for fp32, tighter than Polygraphy's 1e-5 *combined*
atol+rtol once logits exceed ~10). A target may relax or tighten that per format and precision
(``ParityPolicy``: a ``fail`` and an optional ``warn`` tolerance, each with atol, rtol, the error
statistic — ``max`` or a quantile — and the required top-1 agreement); the distribution is always
reported so a near-miss is visible before it ships.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr
from torch import Tensor, nn

from famc.errors import FamcError

#: Default max |artifact - reference| logit error for fp32 artifacts.
DEFAULT_ATOL = 1e-4
#: fp16 artifacts (e.g. CoreML ``precision="fp16"``) carry ~1e-3 relative rounding per layer.
FP16_ATOL = 5e-2
#: Floor on |reference| in the relative error so near-zero logits do not divide by ~0.
REL_FLOOR = 1e-6


def default_atol(precision: str = "fp32") -> float:
    return FP16_ATOL if precision == "fp16" else DEFAULT_ATOL


class Tolerance(BaseModel):
    """Passes when ``statistic(|a - r| - rtol·|r|) <= atol`` over every logit and top-1 agreement
    is at least ``min_agreement``; ``statistic`` is ``max`` (``allclose``) or a quantile in (0, 1)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    atol: float = Field(ge=0, allow_inf_nan=False)
    rtol: float = Field(0.0, ge=0, allow_inf_nan=False)
    statistic: Literal["max"] | Annotated[float, Field(gt=0, lt=1)] = "max"
    min_agreement: float = Field(1.0, ge=0, le=1)

    @property
    def statistic_name(self) -> str:
        return "max|Δ|" if self.statistic == "max" else f"q{self.statistic:g}|Δ|"

    def describe(self) -> str:
        rel = f" + {self.rtol:g}·|ref|" if self.rtol else ""
        return (
            f"{self.statistic_name} ≤ {self.atol:g}{rel}, top-1 agreement ≥ {self.min_agreement:g}"
        )


class ParityPolicy(BaseModel):
    """How one format at one precision is judged: ``fail`` decides the status, ``warn`` (tighter)
    only adds a warning to a passing artifact."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    fail: Tolerance
    warn: Tolerance | None = None

    @classmethod
    def default(cls, precision: str) -> ParityPolicy:
        return cls(fail=Tolerance(atol=default_atol(precision)))


class Parity(BaseModel):
    """Agreement figures between reference and artifact logits over ``n`` samples.

    Relative error is ``|a - r| / max(|r|, 1e-6)`` elementwise (``r`` = reference). Percentiles use
    numpy's linear interpolation over all ``n * classes`` elements. ``min_atol`` is the smallest
    ``atol`` for which ``allclose(artifact, reference, atol, rtol=0)`` holds, i.e. ``max_abs``.
    Accuracy and flip fields are ``None`` when no labels were given.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int
    top1_reference: float | None
    top1_artifact: float | None
    top1_agreement: float
    negative_flips: int | None
    positive_flips: int | None
    max_abs: float
    mean_abs: float
    p99_abs: float
    max_rel: float
    mean_rel: float
    p99_rel: float
    min_atol: float

    _abs: np.ndarray = PrivateAttr(default_factory=lambda: np.zeros(0))
    _ref: np.ndarray = PrivateAttr(default_factory=lambda: np.zeros(0))

    def passed(self, atol: float = DEFAULT_ATOL) -> bool:
        """Ship only if no sample changes its prediction and every logit is within ``atol``."""
        return self.top1_agreement == 1.0 and self.max_abs <= atol

    def error(self, tol: Tolerance) -> float:
        """``tol``'s error statistic: the smallest ``atol`` that passes with its rtol/statistic."""
        excess = self._abs - tol.rtol * self._ref
        if tol.statistic == "max":
            return float(excess.max())
        return _quantile(excess, tol.statistic)

    def meets(self, tol: Tolerance) -> bool:
        return self.top1_agreement >= tol.min_agreement and self.error(tol) <= tol.atol

    def to_dict(self) -> dict[str, float | int | None]:
        return self.model_dump()


def parity(reference_logits: Tensor, artifact_logits: Tensor, labels: Tensor | None) -> Parity:
    """Compare two ``(n, classes)`` logit tensors, in float64 so the metric adds no error."""
    ref = reference_logits.detach().cpu().to(torch.float64)
    art = artifact_logits.detach().cpu().to(torch.float64)
    if ref.shape != art.shape or ref.ndim != 2:
        raise FamcError(
            f"artifact logits have shape {tuple(art.shape)}, reference has {tuple(ref.shape)}; "
            "expected matching (n, classes)"
        )
    n = ref.shape[0]
    if n == 0:
        raise FamcError("parity needs at least one sample")
    ref_top = ref.argmax(dim=1)
    art_top = art.argmax(dim=1)
    # NaN in the artifact must count as disagreement; argmax alone could coincide by accident.
    finite = torch.isfinite(art).all(dim=1)
    agree = (ref_top == art_top) & finite

    top1_ref = top1_art = None
    neg = pos = None
    if labels is not None:
        y = labels.detach().cpu().reshape(-1).to(torch.long)
        if y.shape[0] != n:
            raise FamcError(f"got {y.shape[0]} labels for {n} samples")
        ref_ok = ref_top == y
        art_ok = (art_top == y) & finite
        top1_ref = ref_ok.double().mean().item()
        top1_art = art_ok.double().mean().item()
        neg = int((ref_ok & ~art_ok).sum())
        pos = int((~ref_ok & art_ok).sum())

    diff = (art - ref).abs()
    diff = torch.where(torch.isnan(diff), torch.full_like(diff, float("inf")), diff)
    rel = diff / ref.abs().clamp_min(REL_FLOOR)
    d, r = diff.numpy().ravel(), rel.numpy().ravel()
    max_abs = float(d.max())
    p99_abs, p99_rel = _quantile(d, 0.99), _quantile(r, 0.99)
    result = Parity(
        n=n,
        top1_reference=top1_ref,
        top1_artifact=top1_art,
        top1_agreement=agree.double().mean().item(),
        negative_flips=neg,
        positive_flips=pos,
        max_abs=max_abs,
        mean_abs=float(d.mean()),
        p99_abs=p99_abs,
        max_rel=float(r.max()),
        mean_rel=float(r.mean()),
        p99_rel=p99_rel,
        min_atol=max_abs,
    )
    result._abs, result._ref = d, ref.abs().numpy().ravel()
    return result


def _quantile(values: np.ndarray, q: float) -> float:
    """Quantile (linear); interpolating between infinities yields inf, not NaN."""
    with np.errstate(invalid="ignore"):
        x = float(np.quantile(values, q))
    return float("inf") if np.isnan(x) else x


def torch_logits(model: nn.Module, batches: Iterable[Tensor]) -> Tensor:
    """Reference logits: eval mode, no autograd, on the model's device; returned fp32 on CPU."""
    param = next(iter(model.parameters()), None)
    device = param.device if param is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            outs = [model(x.to(device, torch.float32)).float().cpu() for x in batches]
    finally:
        model.train(was_training)
    if not outs:
        raise FamcError("no input batches given")
    return torch.cat(outs)
