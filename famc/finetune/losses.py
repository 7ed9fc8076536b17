"""Fine-tuning losses of a target model against a fixed reference model (method notes §5).

FD-KD (focal distillation, Positive-Congruent Training; REG-NAS §4.4) adds to cross-entropy a
distillation term whose per-sample weight is ``α + β`` where the reference classifies the sample
right and ``α`` where it does not: the target is pulled hardest toward the reference exactly where
disagreeing would be a *negative* flip, and left freer where the reference is wrong anyway (where a
disagreement can only be a positive flip). ``ce`` is the control: the same fine-tuning without the
reference, so a comparison isolates what the distillation buys.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossSettings:
    alpha: float = 1.0
    beta: float = 5.0
    temperature: float = 1.0


#: (target logits, reference logits, labels, settings) → scalar loss
FinetuneLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, LossSettings], torch.Tensor]


def focal_weights(ref_logits: torch.Tensor, labels: torch.Tensor, s: LossSettings) -> torch.Tensor:
    """Per-sample distillation weight: ``α + β·1[reference right]``."""
    return s.alpha + s.beta * (ref_logits.argmax(1) == labels).float()


def focal_distillation(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor,
                       s: LossSettings) -> torch.Tensor:  # fmt: skip
    """``mean_i[w_i · T² · KL(softmax(z_ref/T) ‖ softmax(z/T))]`` with :func:`focal_weights`."""
    t = s.temperature
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.log_softmax(ref_logits.detach() / t, 1),
                  reduction="none", log_target=True).sum(1)  # fmt: skip
    return (focal_weights(ref_logits, labels, s) * kl).mean() * t * t


def fd_kd(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor,
          s: LossSettings) -> torch.Tensor:  # fmt: skip
    """Cross-entropy plus focal distillation toward the reference."""
    return F.cross_entropy(logits, labels) + focal_distillation(logits, ref_logits, labels, s)


def ce(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor,
       s: LossSettings) -> torch.Tensor:  # fmt: skip
    """Plain cross-entropy: the reference is ignored."""
    return F.cross_entropy(logits, labels)


#: ``finetune.method`` → its loss (the config's ``Literal`` lists exactly these names)
LOSSES: dict[str, FinetuneLoss] = {"fd-kd": fd_kd, "ce": ce}
