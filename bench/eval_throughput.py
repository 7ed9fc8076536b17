"""Architectures evaluated per second: famc's engine vs Once-for-All's own loop.

Both evaluate the same N random architectures of the same supernet (OFA-MobileNetV3 w1.0 layout, the
same random weights loaded into both) on the same Fashion-MNIST images (grayscale replicated to
3 channels at 32×32): extract the sub-network → re-calibrate BN on the calibration images → Top-1 on
the evaluation images.

- OFA: ``set_active_subnet`` → ``get_active_subnet(preserve_weight=True)`` →
  ``set_running_statistics`` (deep copy + hooked forward) → evaluate (NCHW, ``no_grad``).
- famc: ``extract`` (meta-device build, tensor copies only) → ``recalibrate`` → evaluate
  (channels-last, inputs prepared once, ``inference_mode``).

Run: ``.venv/bin/python bench/eval_throughput.py [--archs 10] [--calib 2000] [--images 2000]``.
Needs the ``ofa`` package (``pip install ofa --no-deps``; installed by scripts/test.sh).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from famc.data import ImageSet, load_dataset  # noqa: E402
from famc.evaluate.engine import Evaluator  # noqa: E402
from famc.metrics import top1  # noqa: E402
from famc.space import SearchSpace, get_space  # noqa: E402
from famc.supernet import build_supernet  # noqa: E402
from tests.ofa_reference import import_ofa  # noqa: E402

RES = 32


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
    ofa.eval()
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

    # --- famc ---------------------------------------------------------------------------------
    ev = Evaluator(net, calib, mean, std, batch_size=args.batch)
    t0 = time.perf_counter()
    famc_top1 = [top1(ev.correct(a, test)) for a in archs]
    famc_s = time.perf_counter() - t0

    # --- OFA's loop ---------------------------------------------------------------------------
    def batches(images: ImageSet):
        for x, y in images.batches(args.batch):
            x = (x.float() / 255 - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[
                :, None, None
            ]
            yield x, y

    calib_batches = list(batches(calib))  # OFA's data loader would decode per pass; we help it
    test_batches = list(batches(test))
    t0 = time.perf_counter()
    ofa_top1 = []
    for a in archs:
        cfg = space.to_ofa(a)
        ofa.set_active_subnet(ks=cfg["ks"], e=cfg["e"], d=cfg["d"])
        sub = ofa.get_active_subnet(preserve_weight=True)
        set_running_statistics(sub, calib_batches)
        sub.eval()
        with torch.no_grad():
            correct = torch.cat([sub(x).argmax(1) == y for x, y in test_batches])
        ofa_top1.append(top1(correct))
    ofa_s = time.perf_counter() - t0

    worst = max(abs(a - b) for a, b in zip(famc_top1, ofa_top1, strict=True))
    print(f"{args.archs} architectures, {args.calib} calibration + {args.images} eval images, "
          f"{RES}x{RES}, {args.threads} threads")  # fmt: skip
    print(f"famc : {args.archs / famc_s:6.3f} arch/s ({famc_s:.1f} s)")
    print(f"OFA  : {args.archs / ofa_s:6.3f} arch/s ({ofa_s:.1f} s)")
    print(f"ratio: {ofa_s / famc_s:.2f}x (target >= 3x)")
    print(f"Top-1 agreement: max |famc - OFA| = {worst:.3f} pt (target <= 0.1 pt) "
          f"{'OK' if worst <= 0.1 else 'FAIL'}")  # fmt: skip


if __name__ == "__main__":
    main()
