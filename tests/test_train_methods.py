"""The seed papers' training methods, each on its defining property, and their composition with
resume, --max-steps, DDP and the config's errors."""

from __future__ import annotations

import json
import math
import os
import random
import re
import subprocess
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from famc.cli import app
from famc.data import load_dataset, to_input
from famc.errors import FamcError
from famc.evaluate.engine import load_trained
from famc.metrics import top1
from famc.predictor import AccuracyPredictor, fit_forest
from famc.space import PRESETS, SearchSpace, flops, get_space
from famc.supernet import build_supernet
from famc.train import load_train_config, train
from famc.train import loop as train_loop
from famc.train.config import CPTConfig, LandmarksConfig, SSEConfig
from famc.train.cpt import channels, most_distant
from famc.train.landmarks import Landmarks, select_diverse
from famc.train.loop import SandwichStep
from famc.train.methods import Methods
from famc.train.sampler import AttentiveSampler, FlopsPrior
from famc.train.schedule import SCHEDULES, Schedule, Unlocked, WholeSpace, per_layer_choices
from famc.train.sse import SSE
from tests.test_train import _config, _update, _weights

SPACE = get_space("fashion-mbv3")


def _truth(path: Path, n: int = 8, seed: int = 1, space: SearchSpace = SPACE) -> Path:
    """A synthetic truth file: distinct architectures whose 'stand-alone' Top-1 grows with FLOPs."""
    rng = random.Random(seed)
    archs = list(dict.fromkeys([space.smallest(), space.largest()] +
                               [space.sample(rng) for _ in range(n - 2)]))  # fmt: skip
    results = [{"arch": a.to_dict(), "top1": round(50 + 3e-6 * flops(space, a), 3)} for a in archs]
    path.write_text(json.dumps({"space": space.name, "dataset": "folder", "results": results}))
    return path


# --- schedules: PS / APS unlock the space on schedule ---------------------------------------------
def test_full_view_draws_exactly_what_the_space_draws():
    a, b = random.Random(5), random.Random(5)
    view = Unlocked.full(SPACE)
    assert [view.sample(a) for _ in range(50)] == [SPACE.sample(b) for _ in range(50)]
    assert view.smallest() == SPACE.smallest() and view.largest() == SPACE.largest()


def test_progressive_shrinking_unlocks_kernel_then_depth_then_expand_on_schedule():
    phases = SCHEDULES["ps"](SPACE)
    total = 1000
    sched = Schedule(SPACE, phases, total)
    ends = [round(p.until * total) for p in phases]
    assert ends[-1] == total and ends == sorted(ends)
    rng = random.Random(0)
    seen = []
    for i, end in enumerate(ends):
        view = sched.view(end - 1)  # the last step of phase i
        assert sched.phase(end - 1) == i and sched.phase(end) == min(i + 1, len(ends) - 1)
        samples = [view.sample(rng) for _ in range(300)]
        assert all(view.contains(a) for a in samples)
        kernels = {k for a in samples for ks in a.ks for k in ks}
        depths = {d for a in samples for d in a.d}
        expands = {e for a in samples for es in a.e for e in es}
        seen.append((kernels, depths, expands))
    # phase 0: the largest network only (both resolutions); then kernel, depth, expand unlock
    assert seen[0] == ({7}, {3}, {4})
    assert seen[1] == ({3, 5, 7}, {3}, {4})
    assert seen[2] == ({3, 5, 7}, {2, 3}, {4})
    assert seen[3] == ({3, 5, 7}, {1, 2, 3}, {4})
    assert seen[4] == ({3, 5, 7}, {1, 2, 3}, {3, 4})
    assert seen[5] == ({3, 5, 7}, {1, 2, 3}, {2, 3, 4})
    assert sched.view(total - 1) == Unlocked.full(SPACE)
    # OFA's phase lengths in epochs: largest 180, kernel 120, depth 25 + 120, expand 25 + 120
    cumulative = [180, 300, 325, 445, 470, 590]
    assert ends == pytest.approx([c / 590 * total for c in cumulative], abs=1)


def test_aps_unlocks_the_last_stage_depth_first():
    ps, aps = SCHEDULES["ps"](SPACE), SCHEDULES["aps"](SPACE)
    depth_phase = 2  # the first phase that unlocks depth
    view = aps[depth_phase].unlocked(SPACE)
    assert view.depths[-1] == (1, 2, 3) and all(d == (2, 3) for d in view.depths[:-1])
    assert ps[depth_phase].unlocked(SPACE).depths[-1] == (2, 3)
    assert aps[-1].unlocked(SPACE) == Unlocked.full(SPACE)


# --- attentive sampling (AttentiveNAS) ------------------------------------------------------------
def test_flops_conditioned_samples_fall_in_their_bucket():
    view = Unlocked.full(SPACE)
    prior = FlopsPrior(SPACE, view, buckets=10, samples=2000, seed="t")
    assert prior.prior.sum() == pytest.approx(1.0)
    rng = random.Random(0)
    means = []
    for b in range(prior.buckets):
        if prior.prior[b] < 0.01:
            continue
        draws = [prior.sample(rng, b, max_tries=200) for _ in range(20)]
        assert all(hit for _, hit in draws), f"bucket {b}"
        assert all(prior.bucket(flops(SPACE, a)) == b for a, _ in draws)
        means.append(sum(flops(SPACE, a) for a, _ in draws) / len(draws))
    assert len(means) >= 5 and means == sorted(means)
    # the bucket-conditioned proposal is what makes this cheap: it hits far more often than
    # uniform proposals would in the sparse upper buckets
    top = max(b for b in range(prior.buckets) if prior.prior[b] >= 0.01)
    hits = sum(prior.bucket(flops(SPACE, prior.propose(rng, top))) == top for _ in range(200))
    assert hits / 200 > 2 * prior.prior[top]


def test_capped_rejection_returns_the_nearest_and_counts_the_miss():
    prior = FlopsPrior(SPACE, Unlocked.full(SPACE), buckets=10, samples=500, seed="t")
    arch, hit = prior.sample(random.Random(0), prior.buckets - 1, max_tries=1)
    assert isinstance(hit, bool) and SPACE.validate(arch) == arch


def _attentive_cfg(tmp_path, tiny_folder, **attentive):
    return load_train_config(_config(tmp_path, tiny_folder, sampler="attentive",
                                     attentive={"prior_samples": 300, **attentive}))  # fmt: skip


@pytest.mark.parametrize(("mode", "pick"), [("bestup", min), ("worstup", max)])
def test_bestup_trains_the_lowest_loss_candidate(tmp_path, tiny_folder, mode, pick):
    sampler = AttentiveSampler(_attentive_cfg(tmp_path, tiny_folder, mode=mode, k=4), SPACE)
    scored: list[tuple[list, list[float]]] = []

    def loss(archs):  # any score will do: the sampler must pick by it
        values = [random.Random(str(a)).random() for a in archs]
        scored.append((list(archs), values))
        return values

    chosen = sampler.sample(Unlocked.full(SPACE), random.Random(0), 3, loss)
    assert len(scored) == 3 and all(len(c) == 4 for c, _ in scored)
    for arch, (candidates, values) in zip(chosen, scored, strict=True):
        assert arch == candidates[values.index(pick(values))]


def test_minibatch_loss_score_is_the_candidates_cross_entropy(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, sampler="attentive"))
    run = train_loop._setup(cfg, resume=False, force=False)
    x, y = next(run.images.batches(8))
    archs = [SPACE.smallest(), SPACE.largest()]
    totals = train_loop._Totals()
    scores = train_loop._scoring_loss(run, x, y, totals)(archs)
    assert totals.scoring_forwards == 2
    for arch, score in zip(archs, scores, strict=True):
        run.net.set_active(arch)
        with torch.no_grad():
            logits = run.net(to_input(x, arch.resolution, run.data.mean, run.data.std))
        assert score == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=0.1)))


def test_predictor_scored_bestup_picks_the_highest_prediction(tmp_path, tiny_folder):
    rng = random.Random(0)
    archs = [SPACE.sample(rng) for _ in range(200)]
    x = torch.tensor([SPACE.encode(a) for a in archs], dtype=torch.float64).numpy()
    y = torch.tensor([flops(SPACE, a) / 1e6 for a in archs], dtype=torch.float64).numpy()
    forest = fit_forest(x, y, trees=5, max_depth=6)
    path = tmp_path / "pred.safetensors"
    AccuracyPredictor(SPACE.name, forest, {"kind": "famc-accuracy-predictor"}).save(path)
    sampler = AttentiveSampler(
        _attentive_cfg(tmp_path, tiny_folder, score="predictor", predictor=str(path), k=5), SPACE
    )
    assert sampler.predictor is not None

    def no_loss(archs):
        raise AssertionError("the predictor, not the minibatch loss, scores candidates")

    seen: list[list] = []
    real_scores = sampler.scores
    sampler.scores = lambda c, loss: seen.append(list(c)) or real_scores(c, loss)  # type: ignore[method-assign]
    chosen = sampler.sample(Unlocked.full(SPACE), random.Random(1), 2, no_loss)
    for arch, candidates in zip(chosen, seen, strict=True):
        predicted = sampler.predictor.predict(SPACE, candidates)
        assert arch == candidates[predicted.index(max(predicted))]


# --- landmark regularisation ----------------------------------------------------------------------
def test_ranking_loss_is_zero_when_the_order_is_right_and_positive_otherwise(tiny_folder):
    data = load_dataset("folder", root=tiny_folder, image_size=28, channels=1, search_size=40,
                        calib_size=64)  # fmt: skip
    torch.manual_seed(0)
    step = SandwichStep(build_supernet(SPACE)).train()
    x, y = next(data.train.batches(32))
    a, b = SPACE.smallest(), SPACE.largest()
    with torch.no_grad():
        ce = {}
        for arch in (a, b):
            step.net.set_active(arch)
            ce[arch] = float(F.cross_entropy(step.net(to_input(x, arch.resolution, data.mean,
                                                              data.std)), y))  # fmt: skip
    low, high = (a, b) if ce[a] < ce[b] else (b, a)
    right = step.rank_hinge(x, y, high, low, data.mean, data.std)  # better has the lower loss
    wrong = step.rank_hinge(x, y, low, high, data.mean, data.std)  # better has the higher loss
    assert float(right.detach()) == 0.0
    assert (
        float(wrong.detach()) == pytest.approx(ce[high] - ce[low], rel=1e-4) and ce[high] > ce[low]
    )
    wrong.backward()
    assert step.net.first_conv.conv.weight.grad.abs().sum() > 0


def test_regularisation_weight_is_zero_in_warmup_then_cosine_to_lambda_max(tmp_path):
    cfg = LandmarksConfig(truth=str(_truth(tmp_path / "t.json")), lambda_max=10, warmup=0.5)
    lm = Landmarks(cfg, SPACE, total_steps=100, seed=0)
    lams = [lm.weight(s) for s in range(100)]
    assert all(v == 0 for v in lams[:50]) and lams[50] > 0
    assert all(a <= b for a, b in zip(lams, lams[1:], strict=False))
    assert lams[-1] == pytest.approx(10.0)
    assert lams[74] == pytest.approx(5.0)  # cosine: half-way up at the middle of the rise
    full = Unlocked.full(SPACE)
    assert lm.pair(10, random.Random(0), full) is None
    worse, better, lam = lm.pair(80, random.Random(0), full)
    acc = {a: i for i, a in enumerate(lm.archs)}  # sorted worst first
    assert acc[worse] < acc[better] and lam == lm.weight(80)


def test_landmark_pairs_are_drawn_only_among_networks_the_schedule_has_unlocked(tmp_path):
    """Under PS a locked landmark must not be ranked: it would train what PS keeps for later."""
    cfg = LandmarksConfig(truth=str(_truth(tmp_path / "t.json", n=12)), warmup=0.0)
    lm = Landmarks(cfg, SPACE, total_steps=100, seed=0)
    sched = Schedule(SPACE, SCHEDULES["ps"](SPACE), 100)
    rng = random.Random(0)
    first = sched.view(0)  # the largest network only: at most one landmark, no pair
    assert sum(first.contains(a) for a in lm.archs) <= 1 and lm.pair(5, rng, first) is None
    seen = set()
    for step in range(100):
        view = sched.view(step)
        if (pair := lm.pair(step, rng, view)) is not None:
            assert view.contains(pair[0]) and view.contains(pair[1])
            seen.add(pair[:2])
    assert seen  # the last phase unlocks the whole space: pairs are drawn there


def test_diverse_landmarks_are_far_apart(tmp_path):
    rng = random.Random(3)
    pool = list(dict.fromkeys(SPACE.sample(rng) for _ in range(60)))
    kept = select_diverse(SPACE, pool, 8, 16, random.Random(0))
    assert len(kept) == 8
    assert all(SPACE.hamming(pool[i], pool[j]) >= 16 for i in kept for j in kept if i < j)
    with pytest.raises(FamcError, match="lower landmarks.distance or landmarks.count"):
        select_diverse(SPACE, pool, 8, 40, random.Random(0))


# --- CPT ------------------------------------------------------------------------------------------
def test_cpt_constraint_set_is_the_most_distant():
    small, big = SPACE.smallest(), SPACE.largest()
    near = [SPACE.mutate(SPACE.sample(random.Random(9)), random.Random(i), 0.05) for i in range(12)]
    pool = [*near[:6], small, *near[6:], big]
    chosen = most_distant(SPACE, pool, 2, neighbours=3)
    assert set(chosen) == {small, big}  # the two extremes of a cluster of near-clones
    # and in general: every chosen member's novelty ≥ every other's
    rng = random.Random(1)
    pool = [SPACE.sample(rng) for _ in range(30)]
    chosen = most_distant(SPACE, pool, 5, neighbours=4)
    c = torch.tensor([channels(SPACE, a) for a in pool], dtype=torch.float64)
    d = torch.cdist(c, c, p=1) + torch.diag(torch.full((len(pool),), float("inf")))
    novelty = {a: float(d[i].topk(4, largest=False).values.mean()) for i, a in enumerate(pool)}
    assert min(novelty[a] for a in chosen) >= max(v for a, v in novelty.items() if a not in chosen)
    assert channels(SPACE, small).count(0) == 8 and 0 not in channels(SPACE, big)


def test_cpt_splits_the_sampled_weight_with_the_constraint_set(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, num_random=2,
                                    cpt={"pool": 5, "size": 2}))  # fmt: skip
    methods = Methods(cfg, SPACE, total_steps=10)
    rng = random.Random(0)
    first = methods.plan(0, rng, lambda a: [0.0] * len(a))
    assert first.weights == (1.0, 1.0, 1.0, 1.0)  # nothing to constrain yet
    for step in range(3):
        plan = methods.plan(step, rng, lambda a: [0.0] * len(a))
        methods.observe(plan, [1.0] * len(plan.archs))
    plan = methods.plan(3, rng, lambda a: [0.0] * len(a))
    assert plan.archs[4:] == tuple(methods.cpt.constraints) and len(plan.archs) == 6
    assert plan.weights == (1.0, 0.5, 0.5, 1.0, 0.5, 0.5)  # sampled 2 × 0.5 | constraints 0.5·2/2
    assert plan.passes == 6


# --- SSE ------------------------------------------------------------------------------------------
def test_sse_gives_under_trained_sub_supernets_more_steps():
    sse = SSE(SSEConfig(stages=2, fraction=0.5), SPACE, total_steps=100)
    view = Unlocked.full(SPACE)
    assert sse.narrow(view, 49, random.Random(0)) == view  # before the enhancing phase
    groups = sse.groups(view)
    assert len(groups) == 9 and (1, 3) in groups
    for g in groups:  # one sub-supernet lags the teacher 3 times as much as the others
        arch = view.with_depth(2, g[0]).with_depth(3, g[1]).sample(random.Random(0))
        sse.observe([arch], [3.0 if g == (1, 1) else 1.0])
    rng = random.Random(0)
    drawn = Counter()
    for _ in range(2000):
        narrowed = sse.narrow(view, 60, rng)
        assert narrowed.depths[:2] == view.depths[:2] and len(narrowed.depths[2]) == 1
        drawn[(narrowed.depths[2][0], narrowed.depths[3][0])] += 1
    assert drawn[(1, 1)] / 2000 == pytest.approx(3 / 11, abs=0.03)


# --- composition: resume, --max-steps, metrics, DDP -----------------------------------------------
def _all_methods(tmp_path, tiny_folder, **extra):
    truth = _truth(tmp_path.parent / f"{tmp_path.name}-truth.json")
    settings = {
        "epochs": 3, "sampler": "attentive", "attentive": {"k": 2, "prior_samples": 200},
        "landmarks": {"truth": str(truth), "count": 4, "holdout": 0.2, "warmup": 0.2},
        "schedule": {"kind": "aps"}, "sse": {"fraction": 0.5},
        "cpt": {"pool": 6, "size": 2, "per_step": 1},
        "eval": {"num_random": 0, "batch_size": 64, "truth": str(truth)},
    }  # fmt: skip
    return _config(tmp_path, tiny_folder, **{**settings, **extra})


def _log(run: Path) -> list[dict]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k not in ("seconds", "images_per_s")} for r in rows]


def test_all_methods_resume_exactly_after_a_kill_and_after_max_steps(tmp_path, tiny_folder,
                                                                      monkeypatch):  # fmt: skip
    short = {"max_steps_per_epoch": 2}
    straight = load_train_config(_all_methods(tmp_path / "a", tiny_folder, **short))
    metrics = train(straight, progress=False)
    ranking = metrics["ranking"]
    assert ranking["landmarks_excluded"] == 4 and ranking["n"] == 4
    assert set(ranking) >= {"kendall_tau", "spearman_rho", "pearson_r", "top5_overlap"}
    log = _log(Path(straight.out))
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert log[0]["scoring_forwards"] > 0 and log[-1]["rank_lambda"] > 0

    killed = load_train_config(_all_methods(tmp_path / "b", tiny_folder, **short))
    real = train_loop._checkpoint

    def killed_after_first_epoch(*args, **kwargs):
        real(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "_checkpoint", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(killed, progress=False)
    monkeypatch.setattr(train_loop, "_checkpoint", real)
    train(killed, resume=True, progress=False)

    stopped = load_train_config(_all_methods(tmp_path / "c", tiny_folder, **short))
    partial = train(stopped, progress=False, max_steps=3)  # mid-epoch 2
    assert partial is not None and "largest" in partial
    last = _log(Path(stopped.out))[-1]
    assert (last["epoch"], last["step"], last["partial"]) == (2, 3, True)
    train(stopped, resume=True, progress=False)

    a = _weights(Path(straight.out))
    state = torch.load(Path(straight.out) / "train_state.pt", weights_only=True)
    assert state["methods"]["cpt"]["constraints"] and state["methods"]["sse"]["groups"]
    for other in (killed, stopped):
        b = _weights(Path(other.out))
        assert all(torch.equal(a[k], b[k]) for k in a), other.out
        assert _log(Path(other.out)) == log
        resumed = torch.load(Path(other.out) / "train_state.pt", weights_only=True)
        assert resumed["methods"] == state["methods"]  # CPT pool, SSE losses, sampler counters


def test_resume_refuses_a_damaged_cursor_and_methods_state_of_another_config(tmp_path,
                                                                          tiny_folder):  # fmt: skip
    settings = {"epochs": 1, "max_steps_per_epoch": 2, "eval": {"num_random": 0}}
    cfg = load_train_config(_config(tmp_path, tiny_folder, **settings))
    train(cfg, progress=False, max_steps=1)  # stops mid-epoch: the state holds a cursor
    path = Path(cfg.out) / "train_state.pt"
    good = torch.load(path, weights_only=True)
    assert good["cursor"] is not None
    for damaged in ({**good, "cursor": {**good["cursor"], "rng": "x"}},
                    {**good, "cursor": {**good["cursor"], "totals": {"bogus": 1}}},
                    {**good, "methods": None}):  # fmt: skip
        torch.save(damaged, path)
        with pytest.raises(FamcError, match="is not a famc training state; start the run again"):
            train(cfg, resume=True, progress=False)
    torch.save(good, path)
    other = load_train_config(
        _config(tmp_path, tiny_folder, **settings, cpt={"pool": 4, "size": 2})
    )
    with pytest.raises(FamcError, match="training methods' state .* does not fit this config"):
        train(other, resume=True, progress=False)
    train(cfg, resume=True, progress=False)  # the intact state still resumes
    assert [r["step"] for r in _log(Path(cfg.out))] == [2]


def test_max_steps_cli_writes_checkpoint_and_metrics(tmp_path, tiny_folder):
    cfg = _config(tmp_path, tiny_folder, epochs=5, eval={"num_random": 0, "batch_size": 64})
    result = CliRunner().invoke(app, ["train", str(cfg), "--max-steps", "2"])
    assert result.exit_code == 0, result.output
    # not a terminal: progress is plain lines (famc.progress), the last one at the end
    assert "train: 0/2, elapsed" in result.output
    assert re.search(
        r"train: 2/2, epoch 1/5, loss \d+\.\d+, rate \d+ img/s, elapsed", result.output
    )
    run = tmp_path / "run"
    assert (run / "supernet.safetensors").is_file() and (run / "supernet.metrics.json").is_file()
    state = torch.load(run / "train_state.pt", weights_only=True)
    assert state["step"] == 2 and state["cursor"]["index"] == 2


def test_ddp_with_every_method_matches_single_process(tmp_path, tiny_folder):
    settings = {"epochs": 2, "optimizer": {"lr": 0.005}}  # APS unlocks the landmarks in epoch 2
    single = load_train_config(_all_methods(tmp_path / "single", tiny_folder, **settings))
    train(single, progress=False)
    cfg = _all_methods(tmp_path / "ddp", tiny_folder, **settings)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "famc", "train", str(cfg), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _update(Path(single.out)), _update(tmp_path / "ddp" / "run")
    # The same plans (sub-networks, constraint nets, landmark pairs) on both ranks, so only float
    # rounding separates DDP from one process. With every method on, rounding grows faster than in
    # test_two_process_ddp_matches_single_process: two single-process runs differing only in thread
    # count (1 vs 2) end 2.9e-3 apart (cosine 0.980) under these settings, DDP 2.7e-3 (0.981).
    assert (a - b).abs().max().item() <= 1e-2, (a - b).abs().max().item()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.97
    one, two = _log(Path(single.out)), _log(tmp_path / "ddp" / "run")
    passes = [(r["passes"], r["scoring_forwards"]) for r in one]
    assert passes == [(r["passes"], r["scoring_forwards"]) for r in two]
    assert passes[-1][0] > 4 * 4  # epoch 2 trains landmark pairs beyond its 4 networks a step
    for x, y in zip(one, two, strict=True):
        assert y["loss_total"] == pytest.approx(x["loss_total"], rel=1e-3)


# --- configuration errors -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"attentive": {"k": 3}}, r"field `attentive`: these settings need `sampler: attentive`"),
        ({"sampler": "attentive", "attentive": {"score": "predictor"}},
         r"field `attentive`: `predictor: FILE` .* goes with `score: predictor`"),
        ({"sampler": "attentive", "attentive": {"mode": "middleup"}},
         r"field `attentive.mode`: Input should be 'bestup' or 'worstup'"),
        ({"schedule": {"kind": "ofa"}}, r"field `schedule.kind`: unknown schedule kind 'ofa'"),
        ({"schedule": {"kind": "sandwich", "phases": [{"until": 1, "kernel": 3, "depth": 1,
                                                       "expand": 2}]}},
         r"field `schedule`: `phases` need kind ps or aps"),
        ({"schedule": {"kind": "ps", "phases": [{"until": 0.5, "kernel": 3, "depth": 1, "expand": 2},
                                                {"until": 1, "kernel": 5, "depth": 1, "expand": 2}]}},
         r"phases\[1\].kernel re-locks choices"),
        ({"schedule": {"kind": "aps", "phases": [{"until": 1, "kernel": 3, "depth": [1, 2],
                                                  "expand": 2}]}},
         r"phases\[0\].depth must be one of \[1, 2, 3\] or a list of 4"),
        ({"schedule": {"kind": "ps", "phases": [{"until": 0.5, "kernel": 3, "depth": 1,
                                                 "expand": 2}]}},
         r"the last phase must end at until: 1"),
        ({"sse": {"stages": 4}}, r"field `sse`: stages must be below the space's 4 stages"),
        ({"num_random": 0, "cpt": {}}, r"field `cpt`: acts on the sampled sub-networks"),
        ({"cpt": {"pool": 5, "size": 5}}, r"field `cpt`: size \(5\) must be below pool \(5\)"),
        ({"landmarks": {}}, r"field `landmarks.truth`: required field is missing"),
    ],
)  # fmt: skip
def test_bad_method_settings_name_the_field(tmp_path, tiny_folder, override, message):
    with pytest.raises(FamcError, match=message):
        load_train_config(_config(tmp_path, tiny_folder, **override))


def test_empty_mappings_enable_paper_defaults(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, sampler="attentive", sse={}, cpt={}))
    assert (cfg.attentive.mode, cfg.attentive.k, cfg.attentive.score) == ("bestup", 3, "loss")
    assert cfg.cpt == CPTConfig() and (cfg.cpt.pool, cfg.cpt.size, cfg.cpt.weight) == (100, 10, 0.5)
    assert cfg.sse == SSEConfig()


def test_landmark_count_beyond_the_truth_file_is_a_cli_error(tmp_path, tiny_folder):
    truth = _truth(tmp_path / "t.json", n=5)
    cfg = _config(tmp_path, tiny_folder, landmarks={"truth": str(truth), "count": 9})
    result = CliRunner().invoke(app, ["train", str(cfg), "--no-progress"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert (
        len(lines) == 1 and "landmarks.count is 9" in lines[0] and "Traceback" not in result.output
    )


def test_ranking_needs_architectures_besides_the_landmarks(tmp_path, tiny_folder):
    truth = _truth(tmp_path / "t.json", n=5)
    cfg = load_train_config(_config(tmp_path, tiny_folder, landmarks={"truth": str(truth)},
                                    eval={"truth": str(truth)}))  # fmt: skip
    with pytest.raises(FamcError, match="eval.truth: .* nothing is left to rank"):
        train(cfg, progress=False)
    assert not (tmp_path / "run").exists()  # refused before training


def test_landmarks_split_off_held_out_images(tmp_path, tiny_folder):
    cfg = load_train_config(_all_methods(tmp_path, tiny_folder))
    run = train_loop._setup(cfg, resume=False, force=False)
    assert run.rank_batches is not None
    held = run.rank_batches.images
    assert len(run.images) + len(held) == len(run.data.train) and len(held) == 32
    trained = {tuple(img.flatten().tolist()) for img in run.images.images}
    assert not any(tuple(img.flatten().tolist()) in trained for img in held.images)
    assert math.isclose(len(held) / len(run.data.train), 0.2)


# --- spaces without per-layer choices (AttentiveNAS, OFA-ResNet): the sandwich rule only ----------
def test_sandwich_view_is_unlocked_full_exactly_on_the_ofa_mbv3_family():
    fits = [n for n in PRESETS if per_layer_choices(get_space(n))]
    assert fits == ["ofa-mbv3-w1.2", "ofa-mbv3-w1.0", "fashion-mbv3"]
    assert SCHEDULES["sandwich"](SPACE) == []
    sched = Schedule(SPACE, [], total_steps=10)
    assert sched.view(0) == sched.view(9) == Unlocked.full(SPACE)  # what runs sampled before


@pytest.mark.parametrize("name", ["fashion-attentivenas", "attentivenas", "fashion-resnet"])
def test_sandwich_view_of_a_per_stage_space_is_the_space_itself(name):
    space = get_space(name)
    view = Schedule(space, SCHEDULES["sandwich"](space), total_steps=10).view(3)
    assert isinstance(view, WholeSpace)
    a, b = random.Random(3), random.Random(3)
    drawn = [view.sample(a) for _ in range(50)]
    assert drawn == [space.sample(b) for _ in range(50)] and all(map(view.contains, drawn))
    assert len({arch.w for arch in drawn}) > 1  # elastic widths are trained too
    assert (view.smallest(), view.largest()) == (space.smallest(), space.largest())
    assert not view.contains(replace(space.largest(), w=()))


ATTN = get_space("fashion-attentivenas")


def test_attentivenas_trains_with_cpt_and_landmarks_and_its_checkpoint_evaluates(tmp_path,
                                                                                 tiny_folder):  # fmt: skip
    truth = _truth(tmp_path / "truth.json", space=ATTN)
    cfg = _config(tmp_path, tiny_folder, space=ATTN.name, epochs=1, num_random=2,
                  cpt={"pool": 2, "size": 1, "neighbours": 1},
                  landmarks={"truth": str(truth), "holdout": 0.2, "warmup": 0})  # fmt: skip
    result = CliRunner().invoke(app, ["train", str(cfg), "--max-steps", "2", "--no-progress"])
    assert result.exit_code == 0, result.output
    run = tmp_path / "run"
    # step 1: largest + 2 sampled + smallest + landmark pair; step 2 adds CPT's constraint net
    assert _log(run)[0]["passes"] == 6 + 7
    metrics = json.loads((run / "supernet.metrics.json").read_text())
    assert metrics["largest"]["arch"] == ATTN.largest().to_dict()
    trained = load_trained(run / "supernet.safetensors")
    assert trained.space.name == ATTN.name
    test = trained.data.test
    got = top1(trained.evaluator.correct(ATTN.largest(), test))
    assert got == pytest.approx(metrics["largest"]["top1"], abs=100 / len(test))


_PER_LAYER = r"needs a space with per-layer choices \(ofa-mbv3-w1.2, ofa-mbv3-w1.0, fashion-mbv3\)"
_ATTN_HAS = r"fashion-attentivenas has per-stage choices and elastic widths"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"schedule": {"kind": "ps"}},
         rf"field `schedule`: `schedule.kind: ps` {_PER_LAYER}; {_ATTN_HAS}: use `kind: sandwich`$"),
        ({"schedule": {"kind": "aps", "phases": [{"until": 1, "kernel": 3, "depth": 1,
                                                  "expand": 4}]}},
         rf"field `schedule`: `schedule.kind: aps` {_PER_LAYER}; {_ATTN_HAS}: use `kind: sandwich` "
         r"and remove `phases`$"),
        ({"sampler": "attentive", "attentive": {"k": 2}},
         rf"field `sampler`: `sampler: attentive` {_PER_LAYER}; {_ATTN_HAS}: use `sampler: "
         r"uniform` \(got 'attentive'\)$"),
        ({"sse": {}}, rf"field `sse`: `sse` {_PER_LAYER}; {_ATTN_HAS}: remove the `sse` section$"),
        ({"space": "fashion-resnet", "schedule": {"kind": "ps"}},
         r"`schedule.kind: ps` needs .*; fashion-resnet has per-stage choices and elastic widths"),
    ],
)  # fmt: skip
def test_methods_needing_per_layer_choices_refuse_other_spaces(tmp_path, tiny_folder, override,
                                                               message):  # fmt: skip
    cfg = _config(tmp_path, tiny_folder, **{"space": ATTN.name, **override})
    result = CliRunner().invoke(app, ["train", str(cfg), "--no-progress"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"{cfg}: invalid train config: " in lines[0], result.output
    assert re.search(message, lines[0]), lines[0]
