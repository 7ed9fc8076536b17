"""Accuracy and regression metrics, all derived from boolean correctness vectors.

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


def reward(
    target: torch.Tensor, refs: Sequence[torch.Tensor], lambda1: float, lambda2: float
) -> float:
    """REG-NAS reward ``λ1·Top1 − λ2·NFR`` (mean NFR over the references; none → plain Top-1)."""
    r = lambda1 * top1(target)
    if refs and lambda2:
        r -= lambda2 * sum(nfr(ref, target) for ref in refs) / len(refs)
    return r


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
