"""The example's cold build: wall time, peak memory, and the winner's curse per member.

Runs ``famc build examples/fashion/family.yaml`` as a subprocess with an empty evaluation cache and
a throw-away output directory (both in a temporary directory this script creates and removes), then
reads the release's ``family.json``: for each member of both families its Top-1 on the search split
(what the search ranked by) and on the test split. A search Top-1 above the test Top-1 is the
winner's curse of ranking many candidates on one finite split.

``--population``/``--generations`` override the example's search (REG-NAS's own settings:
``--population 100 --generations 20``); ``--racing-images 0`` turns racing off.

``--config`` builds another example the same way (bench/spaces.py does it for all three spaces).

Run: ``.venv/bin/python bench/build_time.py [--config FAMILY.yaml] [--population P] [--generations G]``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples/fashion/family.yaml"


def config(tmp: Path, args: argparse.Namespace) -> Path:
    """The example with a cold cache in ``tmp`` and the requested search settings."""
    example = args.config.resolve()
    cfg = yaml.safe_load(example.read_text())
    cfg["supernet"] = str(example.parent / cfg["supernet"])
    for m in cfg["members"]:
        m["target"] = str((example.parent / m["target"]).resolve())
    cfg["evaluation"]["cache_dir"] = str(tmp / "cache")
    for key in ("population", "generations"):
        if getattr(args, key):
            cfg["search"][key] = getattr(args, key)
    if args.selection:
        cfg["search"]["selection"] = args.selection
    if args.epsilon_pt is not None:
        cfg["search"]["epsilon_pt"] = args.epsilon_pt
    if args.racing_images is not None:
        cfg["search"]["racing"] = {"images": args.racing_images} if args.racing_images else None
    path = tmp / "family.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def parser() -> argparse.ArgumentParser:
    """The options (bench/spaces.py takes the same ones)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--config", type=Path, default=EXAMPLE, help="family config (default: the example)"
    )
    ap.add_argument("--population", type=int)
    ap.add_argument("--generations", type=int)
    ap.add_argument("--racing-images", type=int, help="0: no racing (default: the example's)")
    ap.add_argument("--save", type=Path, help="also keep the release's family.json here")
    ap.add_argument("--selection", choices=("reward", "epsilon"))
    ap.add_argument("--epsilon-pt", type=float)
    return ap


def cold_build(args: argparse.Namespace) -> tuple[float, float, dict, str, dict]:
    """Build ``args.config`` cold: wall seconds, peak RSS (GB), family.json, stderr, search block."""
    with tempfile.TemporaryDirectory(prefix="famc-build-bench-") as tmp:
        cfg, out = config(Path(tmp), args), Path(tmp) / "release"
        famc = [sys.executable, "-m", "famc", "build", str(cfg), "--out", str(out), "--no-gates"]
        t0 = time.perf_counter()
        done = subprocess.run(famc, cwd=ROOT, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rss_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20
        if done.returncode != 0:
            sys.exit(f"famc build failed ({done.returncode}):\n{done.stderr[-3000:]}")
        manifest = json.loads((out / "family.json").read_text())
        if args.save:
            args.save.write_text((out / "family.json").read_text())
        search = yaml.safe_load(cfg.read_text())["search"]
    return wall, rss_gb, manifest, done.stderr, search


def main() -> None:
    args = parser().parse_args()
    wall, rss_gb, manifest, stderr, search = cold_build(args)
    print("\n".join(line for line in stderr.splitlines() if line.startswith("search:")))
    print(f"cold build: {wall:.0f} s wall, peak RSS {rss_gb:.2f} GB (targets: <= 600 s, <= 4 GB)")
    summary = manifest["summary"]
    print(f"evaluations: {summary['evaluations']}; search settings: {search}")
    print(f"family: {summary['family']}; baseline: {summary['baseline']}; NFR reduction "
          f"{summary['nfr_reduction_pct']} %, Top-1 cost {summary['top1_cost']} pt")  # fmt: skip
    for fam in ("pairwise", "baseline"):
        pairs = manifest[fam] if fam == "pairwise" else (manifest["baseline"] or {}).get("pairwise")
        for pair in pairs or []:
            print(f"  {'reg-nas' if fam == 'pairwise' else 'baseline'} {pair['ref']} -> "
                  f"{pair['target']}: NFR {pair['nfr']:.2f} %")  # fmt: skip
    print("member            family    search Top-1  test Top-1  curse (pt)")
    for family in ("members", "baseline"):
        block = manifest[family] if family == "members" else (manifest.get("baseline") or {})
        rows = block if family == "members" else block.get("members", [])
        for m in rows:
            curse = m["search_top1"] - m["top1"]
            print(f"{m['name']:<17} {'reg-nas' if family == 'members' else 'baseline':<9} "
                  f"{m['search_top1']:>12.2f}  {m['top1']:>10.2f}  {curse:>+9.2f}")  # fmt: skip


if __name__ == "__main__":
    main()
