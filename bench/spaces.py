"""REG-NAS vs baseline in all three search spaces: the paper's "generalizes across spaces" claim.

Builds each space's example family cold (``examples/fashion``, ``examples/fashion-resnet``,
``examples/fashion-attentivenas``: the same data, search settings and selection rule, each from
its committed demo supernet) with bench/build_time.py's ``cold_build``, then prints the pairwise
NFR of both families and each member's test Top-1 side by side, on the test split.

Run: ``.venv/bin/python bench/spaces.py [--save-dir DIR]`` (about 25 minutes on 2 idle cores);
``--save-dir`` keeps each release's family.json as ``DIR/<space>-family.json``.
"""

from __future__ import annotations

from pathlib import Path

from build_time import ROOT, cold_build, parser

EXAMPLES = ("fashion", "fashion-resnet", "fashion-attentivenas")


def pairs(manifest: dict) -> dict[str, tuple[float, float]]:
    """``"edge→server"`` → (REG-NAS NFR, baseline NFR) in %."""
    base = {(p["ref"], p["target"]): p["nfr"] for p in manifest["baseline"]["pairwise"]}
    return {f"{p['ref']}→{p['target']}": (p["nfr"], base[(p["ref"], p["target"])])
            for p in manifest["pairwise"]}  # fmt: skip


def rows(manifest: dict) -> list[str]:
    """One space's table rows: pairs, members, then the summary."""
    out = [f"| {pair} NFR | {ours:.2f} % | {theirs:.2f} % |"
           for pair, (ours, theirs) in pairs(manifest).items()]  # fmt: skip
    for m, b in zip(manifest["members"], manifest["baseline"]["members"], strict=True):
        out.append(f"| {m['name']} Top-1 (MFLOPs) | {m['top1']:.2f} % ({m['flops'] / 1e6:.2f}) "
                   f"| {b['top1']:.2f} % ({b['flops'] / 1e6:.2f}) |")  # fmt: skip
    s = manifest["summary"]
    out += [f"| mean pairwise NFR | {s['family']['mean_pairwise_nfr']:.2f} % "
            f"| {s['baseline']['mean_pairwise_nfr']:.2f} % |",
            f"| mean Top-1 | {s['family']['mean_top1']:.2f} % | {s['baseline']['mean_top1']:.2f} % |",
            f"| NFR reduction / Top-1 cost | {s['nfr_reduction_pct']:.1f} % / {s['top1_cost']:+.2f} pt | |"]  # fmt: skip
    return out


def main() -> None:
    ap = parser()
    ap.add_argument("--save-dir", type=Path, help="keep each release's family.json here")
    args = ap.parse_args()
    for name in EXAMPLES:
        args.config = ROOT / "examples" / name / "family.yaml"
        if args.save_dir:
            args.save = args.save_dir / f"{name}-family.json"
        wall, _rss, manifest, _log, search = cold_build(args)
        print(f"\n### {manifest['space']} (examples/{name}, cold build {wall:.0f} s, "
              f"population {search['population']} × {search['generations']}, "
              f"selection {search.get('selection', 'reward')})\n")  # fmt: skip
        print("| | REG-NAS | baseline (R0) |\n|---|---|---|")
        print("\n".join(rows(manifest)), flush=True)


if __name__ == "__main__":
    main()
