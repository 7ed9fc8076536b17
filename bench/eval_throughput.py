"""Architectures evaluated per second: famc's engine vs Once-for-All's own loop, and racing.

Part 1, the engine on equal work:

Both evaluate the same N random architectures of the same supernet (OFA-MobileNetV3 w1.0 layout, the
same random weights loaded into both) on the same Fashion-MNIST images (grayscale replicated to
3 channels at 32×32): extract the sub-network → re-calibrate BN on the calibration images → Top-1 on
the evaluation images.

- OFA: ``set_active_subnet`` → ``get_active_subnet(preserve_weight=True)`` →
  ``set_running_statistics`` (deep copy + hooked forward) → evaluate (NCHW, ``no_grad``).
- famc: ``extract`` (meta-device build, tensor copies only) → ``recalibrate`` → evaluate
  (channels-last, inputs prepared once, ``inference_mode``).

Part 2, the search's workload: the example's searches (edge R0, then server R2 + CAS; trained demo
supernet, its calibration images, the whole 10,000-image search split) run three times with famc's
own search code and a cold cache: candidates one at a time (part 1's engine), a generation as
prefix trees (``famc.evaluate.tree``: exact, shared first layers run once), and prefix trees with
racing (``search.racing``). Reported: wall time of each, whether the chosen architectures and their
scores are identical, and, over every candidate the raced run scored, Kendall τ between its (partly
sliced) reward and the exhaustive one. Its speed against OFA's loop is part 1's ratio × part 2's
(one at a time → trees + racing).

Run: ``.venv/bin/python bench/eval_throughput.py [--archs 10] [--calib 2000] [--images 2000]
[--generations 4] [--race-images 1000] [--z 2.33]``. Needs the ``ofa`` package (``pip install ofa --no-deps``;
installed by scripts/test.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from famc.data import ImageSet, load_dataset  # noqa: E402
from famc.evaluate.cache import CachedEvaluation  # noqa: E402
from famc.evaluate.engine import Evaluator  # noqa: E402
from famc.metrics import kendall_tau, reward, top1  # noqa: E402
from famc.prepare import prepare  # noqa: E402
from famc.progress import Reporter  # noqa: E402
from famc.search.family import SearchVectors  # noqa: E402
from famc.search.stage import search  # noqa: E402
from famc.space import SearchSpace, get_space  # noqa: E402
from famc.supernet import build_supernet, fold_bn  # noqa: E402
from tests.ofa_reference import import_ofa  # noqa: E402

RES = 32
EXAMPLE = Path(__file__).resolve().parents[1] / "examples/fashion/family.yaml"


def rgb(images: ImageSet) -> ImageSet:
    """Grayscale → 3 identical channels, resized to 32×32 (as uint8)."""
    x = torch.nn.functional.interpolate(images.images.float(), size=RES, mode="bilinear")
    return ImageSet(x.round().clamp(0, 255).to(torch.uint8).repeat(1, 3, 1, 1), images.labels)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", type=int, default=10)
    ap.add_argument("--calib", type=int, default=2000)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--generations", type=int, default=4, help="part 2 (0: skip it)")
    ap.add_argument("--race-images", type=int, default=1000)
    ap.add_argument("--z", type=float, default=2.33, help="racing's z (part 2)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda: both loops run there")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    OFAMobileNetV3, set_running_statistics = import_ofa()
    base = get_space("ofa-mbv3-w1.0")
    head = base.preset.head[:-1] + (dataclasses.replace(base.preset.head[-1], out_c=10),)
    space = SearchSpace(
        dataclasses.replace(base.preset, num_classes=10, head=head, resolutions=(RES,))
    )
    torch.manual_seed(0)
    ofa = OFAMobileNetV3(n_classes=10, dropout_rate=0, width_mult=1.0, ks_list=[3, 5, 7],
                         expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])  # fmt: skip
    ofa.eval().to(args.device)
    net = build_supernet(space)
    from famc.supernet.checkpoint import normalise_key

    net.load_state_dict({normalise_key(k, space.preset): v for k, v in ofa.state_dict().items()})
    net.eval()

    data = load_dataset("fashion-mnist")
    calib = rgb(data.calib.subset(range(args.calib)))
    test = rgb(data.test.subset(range(args.images)))
    mean, std = (0.2858,) * 3, (0.3528,) * 3
    rng = random.Random(0)
    archs = [space.sample(rng) for _ in range(args.archs)]

    # --- OFA's loop ---------------------------------------------------------------------------
    def batches(images: ImageSet):
        for x, y in images.batches(args.batch):
            x = (x.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
                :, None, None
            ]
            yield x.to(args.device), y.to(args.device)

    calib_batches = list(batches(calib))  # OFA's data loader would decode per pass; we help it
    test_batches = list(batches(test))

    def ofa_loop() -> tuple[float, list[float]]:
        t0 = time.perf_counter()
        ofa_top1 = []
        for a in archs:
            cfg = space.to_ofa(a)
            ofa.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
            sub = ofa.get_active_subnet(preserve_weight=True).to(args.device)
            set_running_statistics(sub, calib_batches)
            sub.eval()
            with torch.no_grad():
                correct = torch.cat([sub(x).argmax(1) == y for x, y in test_batches]).cpu()
            ofa_top1.append(top1(correct))
        return time.perf_counter() - t0, ofa_top1

    ofa_s, ofa_top1 = ofa_loop()  # first: famc's Evaluator changes the process's allocator

    # --- famc ---------------------------------------------------------------------------------
    ev = Evaluator(net, calib, mean, std, batch_size=args.batch, device=args.device)
    t0 = time.perf_counter()
    famc_top1 = [top1(ev.correct(a, test)) for a in archs]
    famc_s = time.perf_counter() - t0
    ofa_kept_s = ofa_loop()[0]  # OFA's loop again, with the allocator setting famc made

    calib_s, predict_s = breakdown(ev, archs, test)
    worst = max(abs(a - b) for a, b in zip(famc_top1, ofa_top1, strict=True))
    print(f"part 1: {args.archs} architectures, {args.calib} calibration + {args.images} eval "
          f"images, {RES}x{RES}, {args.threads} threads")  # fmt: skip
    print(f"famc : {args.archs / famc_s:6.3f} arch/s ({famc_s:.1f} s)")
    print(f"OFA  : {args.archs / ofa_s:6.3f} arch/s ({ofa_s:.1f} s)")
    print(f"ratio: {ofa_s / famc_s:.2f}x")
    print(f"OFA's loop with famc's allocator setting (famc.device.keep_freed_memory): "
          f"{args.archs / ofa_kept_s:6.3f} arch/s, ratio {ofa_kept_s / famc_s:.2f}x")  # fmt: skip
    print(f"famc per arch: extract + calibrate {calib_s / len(archs):.3f} s, fold + predict "
          f"{predict_s / len(archs):.3f} s; with calibration free the ratio would be at most "
          f"{ofa_s / predict_s:.2f}x")  # fmt: skip
    print(f"Top-1 agreement: max |famc - OFA| = {worst:.3f} pt (target <= 0.1 pt) "
          f"{'OK' if worst <= 0.1 else 'FAIL'}")  # fmt: skip
    if args.generations:
        speedup = search_workload(args)
        total = ofa_s / famc_s * speedup
        print(f"search workload vs OFA's loop: {ofa_s / famc_s:.2f} x {speedup:.2f} = "
              f"{total:.1f}x (target >= 10x) {'OK' if total >= 10 else 'FAIL'}")  # fmt: skip


def breakdown(ev: Evaluator, archs: list, test: ImageSet) -> tuple[float, float]:
    """famc's time in extract + BN re-calibration and in fold + prediction, summed over ``archs``
    (a second pass, so the timed loop above is not slowed by the clock calls): how far any
    speed-up of calibration alone could take the ratio."""
    calib_s = predict_s = 0.0
    for a in archs:
        t0 = time.perf_counter()
        model = ev.model(a)
        t1 = time.perf_counter()
        ev.logits(fold_bn(model), test, a.resolution).argmax(1)
        calib_s, predict_s = calib_s + t1 - t0, predict_s + time.perf_counter() - t1
    return calib_s, predict_s


def _example_config(tmp: Path, arm: str, generations: int, race: RacingArm | None,
                    device: str) -> Path:  # fmt: skip
    """The example's config, cold cache, edge + server only, no baseline; racing on or off."""
    cfg = yaml.safe_load(EXAMPLE.read_text())
    cfg["supernet"] = str(EXAMPLE.parent / cfg["supernet"])
    for m in cfg["members"]:
        m["target"] = str((EXAMPLE.parent / m["target"]).resolve())
    cfg["members"] = cfg["members"][:2]
    cfg["evaluation"].pop("search_images", None)
    cfg["evaluation"]["cache_dir"] = str(tmp / f"cache-{arm}")
    cfg["evaluation"]["device"] = device
    cfg["search"].update(generations=generations, baseline="none")
    cfg["search"]["racing"] = None if race is None else {"images": race.images, "z": race.z}
    path = tmp / f"family-{arm}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@dataclasses.dataclass(frozen=True)
class RacingArm:
    images: int
    z: float


def _one_at_a_time(ev: CachedEvaluation) -> SearchVectors:
    """Search vectors computed candidate by candidate (part 1's engine: no shared prefixes)."""
    split = "search"
    return SearchVectors(len(ev.splits[split]),
                         lambda archs, race: [v for a in archs
                                              for v in ev.correct_many([a], split, race)])  # fmt: skip


def search_workload(args: argparse.Namespace) -> float:
    """Part 2; returns the one-at-a-time exhaustive time / the raced prefix-tree time."""
    race = RacingArm(args.race_images, args.z)
    arms = {"one at a time": None, "prefix trees": None, "prefix trees + racing": race}
    runs = {}
    with tempfile.TemporaryDirectory(prefix="famc-bench-") as tmp:
        for i, (arm, racing) in enumerate(arms.items()):
            p = prepare(_example_config(Path(tmp), str(i), args.generations, racing, args.device))
            ev = CachedEvaluation(p)
            vectors = _one_at_a_time(ev) if i == 0 else ev.search_vectors
            t0 = time.perf_counter()
            fam = search(p, vectors, Reporter("off")).regnas
            runs[arm] = (time.perf_counter() - t0, fam, ev)
    (base_s, full, ev), (race_s, raced, _) = runs["one at a time"], runs["prefix trees + racing"]
    n = sum(len(m.trace) for m in raced)
    stopped = sum(c.score.partial for m in raced for c in m.trace)
    print(f"part 2: {len(full)} searches of the example, {len(ev.splits['search'])} search "
          f"images; racing on the first {race.images}, z = {race.z}")  # fmt: skip
    for arm, (secs, fam, _) in runs.items():
        same = all(a.best.arch == b.best.arch and a.best.score == b.best.score
                   for a, b in zip(full, fam, strict=True))  # fmt: skip
        print(f"  {arm:24s} {secs:7.1f} s  speed-up {base_s / secs:5.2f}x  chosen members "
              f"{'identical' if same else 'DIFFERENT'}")  # fmt: skip
    print(f"  racing stopped {stopped} of {n} candidates on their first {race.images} images")
    for i, (a, b) in enumerate(zip(full, raced, strict=True)):
        # every candidate the raced search scored, against its exhaustive score (untimed)
        refs = [ev.correct(raced[i - 1].best.arch, "search")] if i else []
        exact = [reward(ev.correct(c.arch, "search"), refs, 1.0, float(bool(refs)))
                 for c in b.trace]  # fmt: skip
        tau = kendall_tau([c.score.reward for c in b.trace], exact)
        print(f"  {a.name}: exhaustive reward {a.best.score.reward:.3f}, raced "
              f"{b.best.score.reward:.3f}; Kendall tau of the raced search's {len(b.trace)} "
              f"scores (stopped ones on {race.images} images) vs exhaustive: {tau:.3f}")  # fmt: skip
    return base_s / race_s


if __name__ == "__main__":
    main()
