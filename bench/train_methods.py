"""The seed papers' supernet training methods side by side, at equal training compute.

Every method trains the demo recipe (``examples/fashion/train.yaml``: 6 epochs, sandwich with one
random sub-network) with one method switched on, then the script reports, per supernet: Kendall τ,
Spearman ρ, Pearson r and top-5 overlap against the stand-alone benchmark (``--truth``), Top-1 of the
largest, the smallest and the median of 5 random sub-networks, and (``--family``) the REG-NAS and
plain-NAS families ``examples/fashion/family.yaml`` builds from it. Finally it trains the best
combination: every method that beat uniform sampling on τ (the better of each alternative pair).

Equal compute means an equal number of sub-network forward+backward passes over the run, a no-grad
forward (attentive sampling's loss scoring) counted as 1/3 of one. Uniform sandwich costs 3 passes a
step; a method costing ``c`` passes a step gets ``steps × 3 / c`` steps an epoch (same epochs, so its
learning-rate schedule and phases still run to the end). The logs' pass counts are summed and
reported, so the equality is checked, not assumed. Not counted: fitting the accuracy predictor
(``famc predictor`` on the committed demo supernet, as AttentiveNAS pre-trains its predictor) and the
stand-alone training of the landmarks (they are the benchmark's own architectures).

Landmarks are half the benchmark (at most 12 architectures), chosen at the largest Hamming distance
at which that many exist; τ is reported both on all benchmark architectures and on the others only ("held-out",
the landmark paper's protocol) — compare methods on the held-out column. On about 12 architectures
one τ is uncertain by about ±0.2, so the table also gives each method's gain over uniform as a 90 %
bootstrap interval (the held-out architectures resampled, the same draws for both supernets).

Run (hours; schedule it): ``nice -n 19 .venv/bin/python bench/train_methods.py --truth
examples/fashion/standalone.json --out runs/train-methods [--family]``. ``--smoke`` runs every step
in minutes (1 epoch of 6 steps, a 16-architecture predictor): a pipeline check, not a measurement.
Finished runs are kept: rerunning skips them.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from famc.errors import FamcError  # noqa: E402
from famc.metrics import kendall_tau, ranking  # noqa: E402
from famc.space import get_space  # noqa: E402
from famc.train.config import TrainConfig  # noqa: E402
from famc.train.landmarks import Landmarks  # noqa: E402
from famc.train.methods import Methods  # noqa: E402

BASE = ROOT / "examples" / "fashion" / "train.yaml"
FAMILY = ROOT / "examples" / "fashion" / "family.yaml"
DEMO = ROOT / "examples" / "fashion" / "supernet" / "supernet.safetensors"
TRAIN_IMAGES = 50_000  # Fashion-MNIST's training split after the 10k search split
LANDMARKS = 12  # at most half the benchmark, so the other half can be ranked

# method → config overlay; "{predictor}" and "{truth}" are filled in at run time
METHODS: dict[str, dict[str, Any]] = {
    "uniform": {},
    "attentive-loss": {"sampler": "attentive", "attentive": {}},
    "attentive-predictor": {"sampler": "attentive",
                            "attentive": {"score": "predictor", "predictor": "{predictor}"}},
    "landmarks": {"landmarks": {"truth": "{truth}"}},  # count, distance: set by main()
    "ps": {"schedule": {"kind": "ps"}},
    "aps": {"schedule": {"kind": "aps"}},
    "sse": {"sse": {}},
    "cpt": {"cpt": {"per_step": 1}},  # the paper's 10 constraint nets a step would cost 13 passes
}  # fmt: skip
ALTERNATIVES = [("attentive-loss", "attentive-predictor"), ("ps", "aps")]


def step_cost(cfg: TrainConfig) -> float:
    """Average sub-network passes per step (a no-grad forward counts 1/3)."""
    cost = 2.0 + cfg.num_random
    if cfg.attentive is not None and cfg.attentive.score == "loss":
        cost += cfg.num_random * cfg.attentive.k / 3
    if cfg.cpt is not None:
        cost += cfg.cpt.per_step or cfg.cpt.size
    if cfg.landmarks is not None:
        cost += 2 * pair_share(cfg)
    return cost


def pair_share(cfg: TrainConfig, steps: int = 1000) -> float:
    """Share of steps that train a landmark pair: after warm-up, and (under PS/APS) only once two
    ordered landmarks are unlocked, as the training loop's own plan decides."""
    methods = Methods(cfg, get_space(cfg.space), steps)
    assert methods.landmarks is not None
    rng = random.Random(0)
    views = (methods.schedule.view(s) for s in range(steps))
    return sum(methods.landmarks.pair(s, rng, v) is not None for s, v in enumerate(views)) / steps


def merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in overlay.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {k: fill(v, names) for k, v in value.items()}
    return value.format(**names) if isinstance(value, str) and "{" in value else value


def make_config(name: str, overlay: dict[str, Any], args: argparse.Namespace,
                names: dict[str, str]) -> tuple[Path, TrainConfig]:  # fmt: skip
    """Write ``out/<name>/train.yaml``: the demo recipe + overlay, at equal compute."""
    base = yaml.safe_load(BASE.read_text())
    raw = merge(base, fill(overlay, names))
    raw.update(out=str(args.out / name / "run"), eval={**raw.get("eval", {}), "num_random": 5})
    if args.smoke:
        raw.update(epochs=1, eval={**raw["eval"], "num_random": 3})
    cfg = TrainConfig.model_validate(raw)
    base_steps = 6 if args.smoke else TRAIN_IMAGES // cfg.batch_size
    base_cost = step_cost(TrainConfig.model_validate(base))
    raw["max_steps_per_epoch"] = max(1, round(base_steps * base_cost / step_cost(cfg)))
    path = args.out / name / "train.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path, TrainConfig.model_validate(raw)


def run(cmd: list[str], log: Path) -> float:
    """Run a famc command, its output to ``log``; returns wall seconds."""
    t0 = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT)
    if proc.returncode != 0:
        sys.exit(f"error: {' '.join(cmd)} failed (exit {proc.returncode}); see {log}")
    return round(time.perf_counter() - t0, 1)


def famc(*args: str) -> list[str]:
    return [sys.executable, "-m", "famc", *args]


def train_one(name: str, overlay: dict[str, Any], args: argparse.Namespace,
              names: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    """Train (unless already done) and summarise one method's supernet."""
    path, cfg = make_config(name, overlay, args, names)
    run_dir = Path(cfg.out)
    metrics_path, done = run_dir / "supernet.metrics.json", args.out / name / "seconds.json"
    if not (metrics_path.is_file() and done.is_file()):
        seconds = run(famc("train", str(path), "--force", "--no-progress", "--truth",
                           str(args.truth)), args.out / name / "train.log")  # fmt: skip
        done.write_text(json.dumps({"train_seconds": seconds}))
    metrics = json.loads(metrics_path.read_text())
    log = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rows = metrics["ranking"]["archs"]
    keyed = sorted((json.dumps(r["arch"], sort_keys=True), r) for r in rows)
    held_out = [r for key, r in keyed if key not in args.landmarks]
    row: dict[str, Any] = {
        "method": name,
        "steps": log[-1]["step"],
        "passes": round(sum(r["passes"] + r["scoring_forwards"] / 3 for r in log)),
        "train_seconds": json.loads(done.read_text())["train_seconds"],
        "all": ranking([r["supernet"] for r in rows], [r["standalone"] for r in rows]).model_dump(),
        "held_out": ranking([r["supernet"] for r in held_out],
                            [r["standalone"] for r in held_out]).model_dump(),
        "held_out_points": [[r["supernet"], r["standalone"]] for r in held_out],
        "top1_largest": metrics["largest"]["top1"],
        "top1_smallest": metrics["smallest"]["top1"],
        "top1_median_random": statistics.median(r["top1"] for r in metrics["random"]),
    }  # fmt: skip
    if "landmarks" in overlay:
        row["all"] = None  # its landmarks are half the benchmark: only held-out is fair
    if args.family:
        row["family"] = build_family(name, run_dir / "supernet.safetensors", args)
    return row


def build_family(name: str, supernet: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The example family (REG-NAS and plain-NAS baseline) built from ``supernet``."""
    cfg = yaml.safe_load(FAMILY.read_text())
    cfg["supernet"] = str(supernet.resolve())
    for m in cfg["members"]:
        m["target"] = str((FAMILY.parent / m["target"]).resolve())
    cfg["out"] = str(args.out / name / "family")
    cfg.setdefault("evaluation", {})["cache_dir"] = str(args.out / "eval-cache")
    if args.smoke:
        cfg["search"].update(population=4, generations=1)
    path = args.out / name / "family.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    if not (args.out / name / "family" / "family.json").is_file():
        run(famc("build", str(path), "--force", "--no-progress", "--no-gates"),
            args.out / name / "build.log")  # fmt: skip
    summary = json.loads((args.out / name / "family" / "family.json").read_text())["summary"]
    return {k: summary[k] for k in ("family", "baseline", "nfr_reduction_pct")}


def pick_landmarks(truth: Path, seed: int) -> dict[str, Any]:
    """``landmarks`` settings: half the benchmark (at most ``LANDMARKS``), at the largest Hamming
    distance at which that many exist, and the architectures they select."""
    from famc.evaluate.rank import Truth
    from famc.train.config import LandmarksConfig

    space = get_space("fashion-mbv3")
    count = min(LANDMARKS, len(Truth(truth, space).archs) // 2)
    for d in range(len(space.genes(space.largest())), -1, -1):
        cfg = LandmarksConfig(truth=str(truth), count=count, distance=d)
        try:
            archs = Landmarks(cfg, space, 1, seed).archs
        except FamcError:
            continue
        return {"count": count, "distance": d, "archs": archs}
    raise SystemExit(f"error: {truth} has too few architectures for landmarks")


def combination(rows: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    """Every method that beat uniform on held-out τ (the better of each alternative pair)."""
    base = rows["uniform"]["held_out"]["kendall_tau"]
    better = {n for n, r in rows.items() if n != "uniform" and r["held_out"]["kendall_tau"] > base}
    for a, b in ALTERNATIVES:
        if a in better and b in better:
            better.discard(min((a, b), key=lambda n: rows[n]["held_out"]["kendall_tau"]))
    if not better:
        return None
    overlay: dict[str, Any] = {}
    for name in sorted(better):
        overlay = merge(overlay, METHODS[name])
    return {"name": "+".join(sorted(better)), "overlay": overlay}


def tau_gain(row: dict[str, Any], base: dict[str, Any], draws: int = 2000) -> tuple[float, float]:
    """90 % bootstrap interval of ``row``'s held-out τ minus ``base``'s, resampling the held-out
    architectures (the same draws for both, so the interval is of the paired difference): with
    about 12 architectures one τ alone is uncertain by about ±0.2."""
    a, b = np.asarray(row["held_out_points"]), np.asarray(base["held_out_points"])
    rng = np.random.default_rng(0)
    gains = []
    for _ in range(draws):
        i = rng.integers(0, len(a), len(a))
        gains.append(kendall_tau(a[i, 0], a[i, 1]) - kendall_tau(b[i, 0], b[i, 1]))
    lo, hi = np.percentile(gains, [5, 95])
    return float(lo), float(hi)


def table(rows: list[dict[str, Any]], family: bool) -> str:
    head = ("| method | passes | steps | τ held-out | Δτ vs uniform, 90 % CI | r held-out | τ all | top-5 | largest | smallest "
            "| median random | train s |")  # fmt: skip
    lines = [head + (" REG-NAS top1 / NFR | baseline top1 / NFR |" if family else ""),
             "|" + "---|" * (head.count("|") - 1 + (2 if family else 0))]  # fmt: skip
    base = next((r for r in rows if r["method"] == "uniform"), None)
    for r in rows:
        gain = "–" if base is None or r is base else "[{:+.2f}, {:+.2f}]".format(*tau_gain(r, base))
        tau_all = "–" if r["all"] is None else f"{r['all']['kendall_tau']:.3f}"
        line = (f"| {r['method']} | {r['passes']} | {r['steps']} | "
                f"{r['held_out']['kendall_tau']:.3f} | {gain} | {r['held_out']['pearson_r']:.3f} | "
                f"{tau_all} | {r['held_out']['top5_overlap']:.2f} | {r['top1_largest']:.2f} | "
                f"{r['top1_smallest']:.2f} | {r['top1_median_random']:.2f} | "
                f"{r['train_seconds']:.0f} |")  # fmt: skip
        if family:
            f, b = r["family"]["family"], r["family"]["baseline"]
            line += (f" {f['mean_top1']:.2f} / {f['mean_pairwise_nfr']:.2f} |"
                     f" {b['mean_top1']:.2f} / {b['mean_pairwise_nfr']:.2f} |")  # fmt: skip
        lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", type=Path, required=True, help="stand-alone truth file")
    ap.add_argument("--out", type=Path, required=True, help="output directory")
    ap.add_argument("--family", action="store_true", help="also build the example family")
    ap.add_argument("--smoke", action="store_true", help="minutes-long pipeline check")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    args = ap.parse_args(argv)
    args.out, args.truth = args.out.resolve(), args.truth.resolve()
    args.out.mkdir(parents=True, exist_ok=True)
    names = {"truth": str(args.truth), "predictor": str(args.out / "predictor.safetensors")}
    seed = TrainConfig.model_validate(yaml.safe_load(BASE.read_text())).seed
    picked = pick_landmarks(args.truth, seed)
    METHODS["landmarks"]["landmarks"].update(count=picked["count"], distance=picked["distance"])
    args.landmarks = {json.dumps(a.to_dict(), sort_keys=True) for a in picked["archs"]}
    wanted = args.methods.split(",")
    if "attentive-predictor" in wanted and not Path(names["predictor"]).is_file():
        size = ["--archs", "16", "--images", "200"] if args.smoke else ["--images", "2500"]
        seconds = run(famc("predictor", str(DEMO), "--out", names["predictor"], *size,
                           "--no-progress"), args.out / "predictor.log")  # fmt: skip
        print(f"predictor: {seconds:.0f} s, {(args.out / 'predictor.log').read_text().strip()}")
    rows: dict[str, dict[str, Any]] = {}
    for name in wanted:
        rows[name] = train_one(name, METHODS[name], args, names)
        print(f"{name}: held-out τ {rows[name]['held_out']['kendall_tau']:.3f}", flush=True)
        write_results(rows, picked, args)  # after every method: hours of runs are never lost
    combo = combination(rows) if "uniform" in rows else None
    if combo is not None and combo["name"] not in rows:
        rows[combo["name"]] = train_one(combo["name"], combo["overlay"], args, names)
        write_results(rows, picked, args)
    print(table(list(rows.values()), args.family))


def write_results(rows: dict[str, dict[str, Any]], picked: dict[str, Any],
                  args: argparse.Namespace) -> None:  # fmt: skip
    """``results.json`` and ``results.md`` for the methods finished so far."""
    doc = {"truth": str(args.truth), "smoke": args.smoke,
           "landmarks": {**METHODS["landmarks"]["landmarks"],
                         "archs": [a.to_dict() for a in picked["archs"]]},
           "methods": list(rows.values())}  # fmt: skip
    (args.out / "results.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "results.md").write_text(table(list(rows.values()), args.family) + "\n")


if __name__ == "__main__":
    main()
