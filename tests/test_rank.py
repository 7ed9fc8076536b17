"""Ranking correlations with known answers, `famc rank` against a synthetic truth file, and the
accuracy predictor."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from famc.cli import app
from famc.errors import FamcError
from famc.evaluate.engine import load_trained
from famc.metrics import kendall_tau, pearson_r, ranking, spearman_rho, top_k_overlap
from famc.predictor import AccuracyPredictor, fit_forest, fit_predictor
from famc.space import flops, get_space
from famc.train import load_train_config, train
from tests.test_train import _config

SPACE = get_space("fashion-mbv3")


def test_correlations_on_hand_computed_cases():
    x = [1, 2, 3, 4]
    assert kendall_tau(x, x) == 1 and kendall_tau(x, x[::-1]) == -1
    assert kendall_tau(x, [1, 3, 2, 4]) == pytest.approx((5 - 1) / 6)  # one discordant pair of 6
    # τ-b with ties: pairs (a,b) tied in y; concordant 4, discordant 1, ties only in y: 1
    assert kendall_tau([1, 2, 3, 4], [1, 1, 3, 2]) == pytest.approx(3 / np.sqrt(6 * 5))
    cubic = [v**3 for v in x]
    assert spearman_rho(x, cubic) == 1 and pearson_r(x, cubic) < 1
    assert pearson_r(x, [2 * v + 1 for v in x]) == pytest.approx(1.0)
    assert spearman_rho([1, 2, 2, 3], [1, 2, 2, 3]) == pytest.approx(1.0)
    assert kendall_tau(x, [5, 5, 5, 5]) == 0 == pearson_r(x, [5, 5, 5, 5])  # no information
    assert top_k_overlap(list(range(10)), list(range(10))) == 1.0
    assert top_k_overlap(list(range(10)), [9, 8, 7, 6, 5, 0, 1, 2, 3, 4]) == 0.0
    assert top_k_overlap([1, 2, 3], [3, 2, 1], k=5) == 1.0  # k capped at the list length
    r = ranking([1, 2, 3], [1, 3, 2])
    assert (r.n, r.kendall_tau) == (3, pytest.approx(1 / 3, abs=1e-4))
    with pytest.raises(ValueError, match="equally long"):
        kendall_tau([1, 2], [1, 2, 3])


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_folder) -> Path:
    tmp = tmp_path_factory.mktemp("rank")
    cfg = load_train_config(_config(tmp, tiny_folder, epochs=3, eval={"num_random": 0}))
    train(cfg, progress=False)
    return Path(cfg.out) / "supernet.safetensors"


def _truth_like_supernet(path: Path, supernet: Path, reverse: bool) -> list[float]:
    """A truth file whose 'stand-alone' accuracies are the supernet's own (or their mirror)."""
    t = load_trained(supernet)
    rng = random.Random(0)
    archs = list(dict.fromkeys([SPACE.smallest(), SPACE.largest(), *(SPACE.sample(rng)
                                                                     for _ in range(6))]))  # fmt: skip
    acc = [100.0 * t.evaluator.correct(a, t.data.test).float().mean().item() for a in archs]
    assert len(set(acc)) > 1, "degenerate fixture: every architecture scores the same"
    truth = [100 - a if reverse else a for a in acc]
    results = [{"arch": a.to_dict(), "top1": v, "flops": flops(SPACE, a), "log": []}
               for a, v in zip(archs, truth, strict=True)]  # fmt: skip
    path.write_text(json.dumps({"space": SPACE.name, "dataset": "folder", "split": "test",
                                "complete": True, "results": results}))  # fmt: skip
    return acc


@pytest.mark.parametrize(("reverse", "tau"), [(False, 1.0), (True, -1.0)])
def test_rank_reports_kendall_tau_against_the_truth(tmp_path, trained, reverse, tau):
    truth = tmp_path / "truth.json"
    acc = _truth_like_supernet(truth, trained, reverse)
    result = CliRunner().invoke(app, ["rank", str(trained), "--truth", str(truth), "--json",
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["kendall_tau"] == pytest.approx(tau) and report["n"] == len(acc)
    assert report["spearman_rho"] == pytest.approx(tau) and report["landmarks_excluded"] == 0
    assert [a["supernet"] for a in report["archs"]] == pytest.approx(acc, abs=1e-3)
    text = CliRunner().invoke(app, ["rank", str(trained), "--truth", str(truth), "--no-progress"])
    assert text.exit_code == 0 and f"Kendall τ {tau:.3f}" in text.output


def test_rank_bad_truth_file_is_one_error_line(tmp_path, trained):
    truth = tmp_path / "truth.json"
    truth.write_text(json.dumps({"space": SPACE.name, "results": [{"arch": {"d": [1]}}]}))
    result = CliRunner().invoke(app, ["rank", str(trained), "--truth", str(truth)])
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert all(ln.startswith("error:") for ln in lines)
    assert any("field `results.0.top1`: required field is missing" in ln for ln in lines)
    assert any("field `results.0.arch.ks`: required field is missing" in ln for ln in lines)
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"space": "ofa-mbv3-w1.0", "results": []}))
    with pytest.raises(FamcError):
        from famc.evaluate.rank import Truth

        Truth(other, SPACE)


# --- the accuracy predictor -----------------------------------------------------------------------
def _flops_dataset(n: int, seed: int) -> tuple[list, np.ndarray, np.ndarray]:
    rng = random.Random(seed)
    archs = [SPACE.sample(rng) for _ in range(n)]
    x = np.array([SPACE.encode(a) for a in archs])
    y = np.array([80 + 2 * np.log(flops(SPACE, a)) + rng.gauss(0, 0.05) for a in archs])
    return archs, x, y


def test_forest_ranks_held_out_architectures_and_round_trips(tmp_path):
    _, x, y = _flops_dataset(400, 0)
    forest = fit_forest(x[:200], y[:200], trees=20, max_depth=8, seed=0)
    assert kendall_tau(list(forest.predict(x[200:])), list(y[200:])) > 0.6
    stump = fit_forest(x[:200], y[:200], trees=3, max_depth=1, seed=0)
    assert ((stump.feature >= 0).sum()) <= 3  # one split per tree at depth 1
    path = tmp_path / "p.safetensors"
    archs = _flops_dataset(10, 1)[0]
    pred = AccuracyPredictor(SPACE.name, forest, {"kind": "famc-accuracy-predictor"})
    pred.save(path)
    again = AccuracyPredictor.load(path, SPACE)
    assert again.predict(SPACE, archs) == pred.predict(SPACE, archs)
    with pytest.raises(FamcError, match="not 'ofa-mbv3-w1.0'"):
        AccuracyPredictor.load(path, get_space("ofa-mbv3-w1.0"))


def test_fit_predictor_reports_held_out_tau(trained):
    def fake_correct(arch):  # a supernet whose accuracy grows with FLOPs
        import torch

        rate = min(0.95, 0.3 + flops(SPACE, arch) / 2e7)
        return torch.arange(1000) < int(rate * 1000)

    done = []
    fitted = fit_predictor(SPACE, fake_correct, archs=120, trees=10, max_depth=8,
                           advance=lambda: done.append(1))  # fmt: skip
    assert len(done) == 120 and fitted.info["n_fit"] == "60"
    assert float(fitted.info["kendall_tau_heldout"]) > 0.6


def test_predictor_cli_writes_a_loadable_file(tmp_path, trained):
    out = tmp_path / "pred.safetensors"
    result = CliRunner().invoke(app, ["predictor", str(trained), "--out", str(out), "--archs",
                                      "16", "--images", "20", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "Kendall τ on 8 held-out architectures" in result.output
    assert len(AccuracyPredictor.load(out, SPACE).predict(SPACE, [SPACE.largest()])) == 1


def test_damaged_predictor_and_checkpoint_metadata_are_one_error_line(tmp_path, trained):
    from safetensors.torch import load_file, save_file

    out = tmp_path / "pred.safetensors"
    forest = fit_forest(*_flops_dataset(40, 0)[1:], trees=2, max_depth=3, seed=0)
    AccuracyPredictor(SPACE.name, forest, {"kind": "famc-accuracy-predictor"}).save(out)
    meta = {"space": SPACE.name, "kind": "famc-accuracy-predictor"}
    tensors = load_file(str(out))
    inner = int((tensors["feature"] >= 0).nonzero()[0])
    tensors["left"][inner] = inner  # a cycle: predict would never end
    save_file(tensors, str(out), metadata=meta)
    with pytest.raises(FamcError, match="child that does not follow its parent"):
        AccuracyPredictor.load(out, SPACE)
    save_file({**tensors, "value": tensors["value"].float()[:3]}, str(out), metadata=meta)
    with pytest.raises(FamcError, match="unequal length"):
        AccuracyPredictor.load(out, SPACE)

    from safetensors import safe_open

    with safe_open(str(trained), framework="pt") as f:
        good = dict(f.metadata())
    truth = tmp_path / "truth.json"
    results = [{"arch": a.to_dict(), "top1": v, "flops": flops(SPACE, a), "log": []}
               for a, v in [(SPACE.smallest(), 50.0), (SPACE.largest(), 60.0)]]  # fmt: skip
    truth.write_text(json.dumps({"space": SPACE.name, "dataset": "folder", "split": "test",
                                 "complete": True, "results": results}))  # fmt: skip
    ckpt = tmp_path / "ckpt.safetensors"
    for key, value, command in [
        ("config", "{not json", ["predictor", str(ckpt), "--out", str(tmp_path / "p2.safetensors")]),
        ("config", '{"eval": {"bn_convention": "x"}}', ["predictor", str(ckpt), "--out", str(out)]),
        ("landmarks", '[{"ks": 1}]', ["rank", str(ckpt), "--truth", str(truth)]),
        ("landmarks", "{", ["rank", str(ckpt), "--truth", str(truth)]),
    ]:  # fmt: skip
        save_file(load_file(str(trained)), str(ckpt), metadata={**good, key: value})
        result = CliRunner().invoke(app, [*command, "--no-progress"])
        assert result.exit_code == 2 and "Traceback" not in result.output, result.output
        lines = [ln for ln in result.output.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith(f"error: {ckpt}"), result.output
