"""Flip metrics on hand-made correctness vectors with known answers."""

from __future__ import annotations

import pytest
import torch

from famc.metrics import negative_flip_impact, nfr, pairwise, pfr, relative_nfr, reward, top1


def v(bits: str) -> torch.Tensor:
    return torch.tensor([b == "1" for b in bits])


REF = v("1111110000")  # 60 % right
TGT = v("1111001110")  # 70 % right; 2 negative flips (idx 4, 5), 3 positive (6, 7, 8)


def test_top1_nfr_pfr():
    assert top1(REF) == pytest.approx(60.0)
    assert top1(TGT) == pytest.approx(70.0)
    assert nfr(REF, TGT) == pytest.approx(20.0)
    assert pfr(REF, TGT) == pytest.approx(30.0)
    assert nfr(TGT, REF) == pytest.approx(30.0)  # asymmetric


def test_relative_nfr_and_impact():
    # independent models of these error rates would flip 0.6 * 0.3 = 18 % of samples
    assert relative_nfr(REF, TGT) == pytest.approx(0.20 / 0.18)
    assert negative_flip_impact(REF, TGT) == pytest.approx(2 / 3)
    assert negative_flip_impact(REF, v("1111111111")) == 0.0


def test_identical_models_never_flip():
    assert nfr(TGT, TGT) == 0.0 and pfr(TGT, TGT) == 0.0 and relative_nfr(TGT, TGT) == 0.0


def test_reward_r0_r1_r2():
    assert reward(TGT, [REF], 1, 0) == pytest.approx(70.0)
    assert reward(TGT, [REF], 0, 1) == pytest.approx(-20.0)
    assert reward(TGT, [REF], 1, 1) == pytest.approx(50.0)
    assert reward(TGT, [], 1, 1) == pytest.approx(70.0)
    assert reward(TGT, [REF, TGT], 1, 1) == pytest.approx(70.0 - 10.0)  # mean NFR of (20, 0)


def test_pairwise_covers_every_smaller_to_larger_pair():
    third = v("1111111110")
    rows = pairwise([("edge", REF), ("server", TGT), ("cloud", third)])
    assert [(r.ref, r.target) for r in rows] == [
        ("edge", "server"), ("edge", "cloud"), ("server", "cloud")
    ]  # fmt: skip
    assert rows[0].nfr == pytest.approx(20.0) and rows[1].nfr == 0.0


def test_bad_vectors_rejected():
    with pytest.raises(ValueError):
        nfr(REF, v("101"))
    with pytest.raises(ValueError):
        top1(torch.tensor([1, 0]))
