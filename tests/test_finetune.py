"""Fine-tuning against the member below: FD-KD focuses on the samples the reference gets right
(method notes §5), ``ce`` ignores the reference, and the config names exactly the registered losses."""

from __future__ import annotations

import typing

import pytest
import torch
import torch.nn.functional as F

from famc.config import FinetuneConfig
from famc.finetune.losses import LOSSES, LossSettings, ce, fd_kd, focal_distillation, focal_weights

S = LossSettings(alpha=1.0, beta=5.0, temperature=2.0)


def _pair() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two samples with identical target and reference logits; the reference predicts class 0, so
    it is right on the first sample (label 0) and wrong on the second (label 1)."""
    ref = torch.tensor([[2.0, 0.5, -1.0]]).repeat(2, 1)
    logits = torch.tensor([[0.1, 1.2, 0.3]]).repeat(2, 1)
    return logits, ref, torch.tensor([0, 1])


def test_weights_are_alpha_plus_beta_where_the_reference_is_right():
    logits, ref, labels = _pair()
    assert focal_weights(ref, labels, S).tolist() == [6.0, 1.0]


def test_distillation_pulls_harder_on_samples_the_reference_gets_right():
    logits, ref, labels = _pair()
    logits.requires_grad_(True)
    focal_distillation(logits, ref, labels, S).backward()
    grad = logits.grad
    assert grad is not None
    norms = grad.norm(dim=1)
    # same logits, same KL: only the reference's correctness differs, so the pull is (α+β)/α
    assert norms[0] / norms[1] == pytest.approx((S.alpha + S.beta) / S.alpha, rel=1e-5)
    # the gradient moves the target toward the reference's distribution on both samples
    toward = F.softmax(ref / S.temperature, 1) - F.softmax(logits.detach() / S.temperature, 1)
    assert all(float((-g * t).sum()) > 0 for g, t in zip(grad, toward, strict=True))


def test_no_pull_once_the_target_agrees_and_fd_kd_is_ce_plus_the_focal_term():
    logits, ref, labels = _pair()
    assert float(focal_distillation(ref.clone(), ref, labels, S)) == pytest.approx(0.0, abs=1e-6)
    expected = F.cross_entropy(logits, labels) + focal_distillation(logits, ref, labels, S)
    assert float(fd_kd(logits, ref, labels, S)) == pytest.approx(float(expected))
    assert float(ce(logits, ref, labels, S)) == pytest.approx(
        float(F.cross_entropy(logits, labels))
    )
    # β = 0 is plain (uniformly weighted) distillation: the two samples pull equally
    flat = focal_weights(ref, labels, LossSettings(alpha=1.0, beta=0.0))
    assert flat.tolist() == [1.0, 1.0]


def test_reference_gets_no_gradient():
    logits, ref, labels = _pair()
    logits.requires_grad_(True)
    ref.requires_grad_(True)
    fd_kd(logits, ref, labels, S).backward()
    assert ref.grad is None and logits.grad is not None


def test_config_methods_are_the_registered_losses():
    methods = typing.get_args(FinetuneConfig.model_fields["method"].annotation)
    assert set(methods) == set(LOSSES)
    with pytest.raises(ValueError, match="'fd-kd' or 'ce'"):
        FinetuneConfig(method="kd")  # type: ignore[arg-type]
