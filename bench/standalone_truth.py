"""Ranking ground truth for ``fashion-mbv3``: a fixed set of architectures, each trained alone.

The set is chosen deterministically so every run of this script (and every supernet it is compared
with) ranks the same architectures, spread evenly over the space's whole FLOPs range: the space's
smallest and largest architectures, and for each of ``n - 2`` evenly spaced FLOPs targets between
them the closest architecture of a seeded pool (``random.Random(0)``). Uniform samples alone only
reach the middle of the range, so the pool also holds chains of architectures that contain the
previous one (CAS sampling), which climb toward the largest.

Each architecture is trained from scratch by ``famc.train.standalone.train_standalone`` with one
recipe, in sequence in this one process. The output JSON is rewritten atomically (temp file +
``os.replace``) after every architecture, so a kill loses at most the one in progress, and
``--resume`` (the default) skips architectures already in the file.

``--device cuda`` (or ``auto``) trains on a GPU: same initial weights and batches, other numerics,
so every result records the ``device`` and ``torch_version`` it was trained with (results of files
written before this field existed were trained on the CPU with the file's ``torch``). The device is
not part of the recipe: a CPU-made partial file resumes on a GPU and keeps its results.

Run: ``.venv/bin/python bench/standalone_truth.py --out runs/standalone.json [--epochs E] [--n 24]
[--device cuda]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from famc.data import DataSplits

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import famc  # noqa: E402
from famc.data import load_dataset  # noqa: E402
from famc.device import DEVICES, resolve_device  # noqa: E402
from famc.errors import FamcError  # noqa: E402
from famc.space import Arch, SearchSpace, flops, get_space  # noqa: E402
from famc.train.standalone import StandaloneRecipe, train_standalone  # noqa: E402

SPACE = "fashion-mbv3"
DATASET = "fashion-mnist"
SAMPLES = 5000
SELECTION_SEED = 0


def select_archs(space: SearchSpace, n: int, samples: int = SAMPLES) -> list[Arch]:
    """``n`` distinct architectures at evenly spaced FLOPs from the smallest to the largest."""
    if n < 2:
        raise ValueError(f"n must be >= 2 (the smallest and the largest), got {n}")
    rng = random.Random(SELECTION_SEED)
    pool: set[Arch] = set()
    for _ in range(samples // 4):  # a uniform sample, then three ever larger ones containing it
        arch = space.sample(rng)
        for _ in range(4):
            pool.add(arch)
            arch = space.sample_containing(arch, rng)
    lo, hi = space.smallest(), space.largest()
    f_lo, f_hi = flops(space, lo), flops(space, hi)
    chosen = [lo, hi]
    ranked = sorted(pool - {lo, hi}, key=lambda a: (flops(space, a), a))
    for i in range(1, n - 1):
        target = f_lo + i * (f_hi - f_lo) / (n - 1)
        best = min((a for a in ranked if a not in chosen),
                   key=lambda a: abs(flops(space, a) - target))  # fmt: skip
        chosen.append(best)
    return sorted(chosen, key=lambda a: (flops(space, a), a))


def host_info() -> dict[str, Any]:
    """What the timings in the output depend on."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def write_json_atomic(path: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to a temp sibling, fsync, then ``os.replace``: readers see old or new."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_previous(
    path: Path, recipe: StandaloneRecipe, planned: list[Arch], resume: bool
) -> dict[str, dict[str, Any]]:
    """Results of an earlier run to keep, keyed by architecture; refuses to mix recipes or to
    drop results of architectures the current plan no longer holds."""
    if not resume or not path.exists():
        return {}
    prev = json.loads(path.read_text())
    if prev.get("recipe") != recipe.to_dict():
        sys.exit(
            f"error: {path} was made with recipe {prev.get('recipe')}, not {recipe.to_dict()}: "
            f"pass the same options, another --out, or --no-resume to start over"
        )
    old = {"device": "cpu", "torch_version": prev.get("torch", "")}  # before results recorded it
    done = {arch_key(r["arch"]): {**old, **r} for r in prev.get("results", [])}
    extra = set(done) - {arch_key(a.to_dict()) for a in planned}
    if extra:
        sys.exit(
            f"error: {path} holds {len(extra)} result(s) outside this architecture set (another "
            f"--n?): pass the same --n, another --out, or --no-resume to start over"
        )
    return done


def arch_key(arch: dict[str, Any]) -> str:
    return json.dumps(arch, sort_keys=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = StandaloneRecipe()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="output JSON file")
    ap.add_argument("--epochs", type=int, default=defaults.epochs)
    ap.add_argument("--n", type=int, default=24, help="number of architectures")
    ap.add_argument("--threads", type=int, default=defaults.threads)
    ap.add_argument("--device", choices=DEVICES, default="cpu", help="cuda, or auto: a GPU if any")
    ap.add_argument(
        "--resume",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="skip architectures already in --out (default: on)",
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        device = resolve_device(args.device, "--device", "pass --device cpu, or --device auto")
    except FamcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    recipe = StandaloneRecipe(epochs=args.epochs, threads=args.threads)
    space = get_space(SPACE)
    archs = select_archs(space, args.n)
    done = load_previous(args.out, recipe, archs, args.resume)
    prev_wall = json.loads(args.out.read_text())["wall_seconds"] if done else 0.0
    doc: dict[str, Any] = {
        "space": SPACE,
        "dataset": DATASET,
        "split": "test",
        "selection": f"{SAMPLES} samples of random.Random({SELECTION_SEED}), sorted by FLOPs, "
        f"{args.n} at evenly spaced FLOPs from the smallest to the largest",
        "recipe": recipe.to_dict(),
        "command": shlex.join([sys.executable, *sys.argv]),
        "host": host_info(),
        "famc_source": str(Path(famc.__file__).resolve().parent),
        "torch": torch.__version__,
        "archs": [{"arch": a.to_dict(), "flops": flops(space, a)} for a in archs],
        "results": [],
        "complete": False,
        "wall_seconds": float(prev_wall),
    }
    data = load_dataset(DATASET, search_size=10000, calib_size=2000, seed=0)
    print(f"{len(archs)} architectures ({len(done)} already done) on {device}, recipe {recipe}",
          flush=True)  # fmt: skip
    run(space, archs, data, recipe, doc, done, args.out, args.device)


def run(
    space: SearchSpace,
    archs: list[Arch],
    data: DataSplits,
    recipe: StandaloneRecipe,
    doc: dict[str, Any],
    done: dict[str, dict[str, Any]],
    out: Path,
    device: str = "cpu",
) -> None:
    """Train every architecture not in ``done``, rewriting ``out`` after each one."""
    start, base = time.perf_counter(), doc["wall_seconds"]
    for i, arch in enumerate(archs, 1):
        key = arch_key(arch.to_dict())
        if key in done:
            doc["results"].append(done[key])
            print(f"[{i}/{len(archs)}] {arch}: already done, top1 {done[key]['top1']}", flush=True)
            continue
        fl = flops(space, arch)
        print(f"[{i}/{len(archs)}] {arch} {fl / 1e6:.2f} MFLOPs", flush=True)

        def progress(row: dict[str, Any], i: int = i) -> None:
            elapsed = base + time.perf_counter() - start
            print(
                f"  arch {i}/{len(archs)} epoch {row['epoch']}/{recipe.epochs} loss "
                f"{row['loss']:.4f} epoch {row['seconds']:.1f}s (cpu {row['cpu_seconds']:.1f}s) "
                f"elapsed {elapsed / 60:.1f} min",
                flush=True,
            )

        result = train_standalone(space, arch, data, recipe, log=progress, device=device).to_dict()
        doc["results"].append(result)
        doc["wall_seconds"] = round(base + time.perf_counter() - start, 1)
        write_json_atomic(out, doc)
        print(f"  top1 {result['top1']:.2f} in {result['seconds']:.0f}s", flush=True)
    doc["complete"] = True
    doc["wall_seconds"] = round(base + time.perf_counter() - start, 1)
    write_json_atomic(out, doc)
    print(f"done: {len(archs)} architectures, {doc['wall_seconds'] / 60:.1f} min", flush=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:  # the file holds every finished architecture; a rerun goes on
        print("interrupted: the architecture in progress is lost; run again to continue",
              file=sys.stderr)  # fmt: skip
        sys.exit(130)
