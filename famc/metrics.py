"""Accuracy and regression metrics (from boolean correctness vectors) and ranking correlations.

A correctness vector says, per sample of a split, whether a model classified it right; evaluating a
model once gives every pairwise metric against every other model (REG-NAS §3.1; Positive-Congruent
Training). Rates are percentages of the split, like Top-1.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict


def pack_correct(correct: torch.Tensor) -> str:
    """Boolean vector → base64 of its packed bits (1 bit per sample instead of a JSON list)."""
    return base64.b64encode(np.packbits(correct.cpu().numpy().astype(np.bool_)).tobytes()).decode()


def unpack_correct(text: str, n: int) -> torch.Tensor:
    """Inverse of :func:`pack_correct`; ``n`` drops the padding bits of the last byte."""
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text), dtype=np.uint8), count=n)
    return torch.from_numpy(bits.astype(np.bool_))


def _check(*vectors: torch.Tensor) -> None:
    n = vectors[0].numel()
    if n == 0 or any(v.numel() != n or v.dtype != torch.bool for v in vectors):
        raise ValueError("metrics need non-empty boolean correctness vectors of equal length")


def top1(correct: torch.Tensor) -> float:
    """Accuracy in percent."""
    _check(correct)
    return 100.0 * correct.float().mean().item()


def nfr(ref: torch.Tensor, target: torch.Tensor) -> float:
    """Negative flip rate (%): samples the reference gets right and the target gets wrong."""
    _check(ref, target)
    return 100.0 * (ref & ~target).float().mean().item()


def pfr(ref: torch.Tensor, target: torch.Tensor) -> float:
    """Positive flip rate (%): samples the reference gets wrong and the target gets right."""
    _check(ref, target)
    return 100.0 * (~ref & target).float().mean().item()


def relative_nfr(ref: torch.Tensor, target: torch.Tensor) -> float:
    """NFR over what two *independent* models of the same error rates would flip:
    ``NFR / ((1 - err_ref) * err_target)``; below 1 means the pair errs in a correlated way."""
    _check(ref, target)
    expected = ref.float().mean().item() * (1.0 - target.float().mean().item())
    return (nfr(ref, target) / 100.0) / expected if expected > 0 else 0.0


def negative_flip_impact(ref: torch.Tensor, target: torch.Tensor) -> float:
    """Share of the target's errors that are negative flips (0 when the target makes none)."""
    _check(ref, target)
    errors = int((~target).sum())
    return int((ref & ~target).sum()) / errors if errors else 0.0


def per_sample_reward(
    target: torch.Tensor, refs: Sequence[torch.Tensor], lambda1: float, lambda2: float
) -> torch.Tensor:
    """Each sample's share of the REG-NAS reward (its mean is :func:`reward`): racing compares two
    candidates sample by sample on the same images."""
    _check(target, *refs)
    r = lambda1 * 100.0 * target.double()
    if refs and lambda2:
        flips = torch.stack([ref & ~target for ref in refs]).double().mean(0)
        r = r - lambda2 * 100.0 * flips
    return r


def reward(
    target: torch.Tensor, refs: Sequence[torch.Tensor], lambda1: float, lambda2: float
) -> float:
    """REG-NAS reward ``λ1·Top1 − λ2·NFR`` (mean NFR over the references; none → plain Top-1)."""
    return per_sample_reward(target, refs, lambda1, lambda2).mean().item()


class Pair(BaseModel):
    """Flip metrics of one smaller→larger pair of a family (rates in %, on one split)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ref: str
    target: str
    nfr: float
    pfr: float
    rel_nfr: float
    nfi: float


def pairwise(named: Sequence[tuple[str, torch.Tensor]]) -> list[Pair]:
    """Every smaller→larger pair of an ordered family (smallest first), with all flip metrics."""
    return [
        Pair(
            ref=ref_name,
            target=tgt_name,
            nfr=round(nfr(ref, tgt), 4),
            pfr=round(pfr(ref, tgt), 4),
            rel_nfr=round(relative_nfr(ref, tgt), 4),
            nfi=round(negative_flip_impact(ref, tgt), 4),
        )
        for i, (ref_name, ref) in enumerate(named)
        for tgt_name, tgt in named[i + 1 :]
    ]


# --- ranking quality: does a supernet order architectures as stand-alone training does? --------
def _paired(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size < 2:
        raise ValueError("ranking metrics need two equally long score lists of at least 2 items")
    return a, b


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either list handled); 0 when either list is constant, since it then
    carries no ordering information."""
    a, b = _paired(x, y)
    iu = np.triu_indices(a.size, 1)
    sa = np.sign(a[:, None] - a[None, :])[iu]
    sb = np.sign(b[:, None] - b[None, :])[iu]
    denom = np.sqrt(float((sa * sa).sum()) * float((sb * sb).sum()))
    return float((sa * sb).sum() / denom) if denom else 0.0


def pearson_r(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's correlation coefficient; 0 when either list is constant."""
    a, b = _paired(x, y)
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt(float((a * a).sum()) * float((b * b).sum()))
    return float((a * b).sum() / denom) if denom else 0.0


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size)
    ranks[order] = np.arange(1, a.size + 1)
    for value in np.unique(a):
        tied = a == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's ρ: Pearson's r of the (tie-averaged) ranks."""
    a, b = _paired(x, y)
    return pearson_r(list(_ranks(a)), list(_ranks(b)))


def top_k_overlap(x: Sequence[float], y: Sequence[float], k: int = 5) -> float:
    """Share of the ``k`` highest-scoring items of ``x`` that are also among ``y``'s top ``k``
    (ties broken by position); ``k`` is capped at the list length."""
    a, b = _paired(x, y)
    k = min(k, a.size)
    top_a = set(np.argsort(-a, kind="stable")[:k].tolist())
    top_b = set(np.argsort(-b, kind="stable")[:k].tolist())
    return len(top_a & top_b) / k


class Ranking(BaseModel):
    """How well one score list (a supernet's) orders items as a reference list (stand-alone) does."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    n: int
    kendall_tau: float
    spearman_rho: float
    pearson_r: float
    top5_overlap: float


def ranking(scores: Sequence[float], truth: Sequence[float]) -> Ranking:
    """Every ranking figure famc reports, rounded for files and tables."""
    return Ranking(
        n=len(truth),
        kendall_tau=round(kendall_tau(scores, truth), 4),
        spearman_rho=round(spearman_rho(scores, truth), 4),
        pearson_r=round(pearson_r(scores, truth), 4),
        top5_overlap=round(top_k_overlap(scores, truth, 5), 4),
    )
