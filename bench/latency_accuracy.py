"""Re-validate shipped latency tables against fresh random sub-networks measured end to end.

The figures stored in a table come from the sub-networks its ``overhead_ms`` was fitted on; this
bench draws *different* ones (another seed) and scores the table as shipped, so it measures how
well the table generalises on this host today. Usage::

    .venv/bin/python bench/latency_accuracy.py [TABLE ...] [--n 100] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from famc.errors import FamcError
from famc.latency import LatencyTable, accuracy
from famc.latency.profile import measure_archs, sample_archs
from famc.latency.runtimes import check_runtime, device_info
from famc.space import get_space

SHIPPED = sorted((Path(__file__).resolve().parents[1] / "latency_tables").glob("*.yaml"))


def bench(path: Path, n: int, seed: int) -> None:
    table = LatencyTable.load(path)
    m = table.metadata
    space = get_space(m.space)
    runtime = check_runtime(m.runtime)
    here = device_info(runtime)
    if (here.cpu, here.gpu) != (m.device.cpu, m.device.gpu):
        print(
            f"  note: measured on {m.device.cpu}/{m.device.gpu}, running on {here.cpu}/{here.gpu}"
        )
    table.check_covers(space)
    started = time.perf_counter()
    archs = sample_archs(space, n, seed)
    measured = measure_archs(space, archs, runtime, m.threads, m.batch, m.warmup, m.repeats, seed)
    sums = [table.layer_sum(a, space) for a in archs]
    shipped = accuracy([s + table.overhead_ms for s in sums], measured)
    refit_overhead = sum(x - s for x, s in zip(measured, sums, strict=True)) / n
    refit = accuracy([s + refit_overhead for s in sums], measured)
    stored = m.validation
    print(
        f"{path.name}: {n} fresh sub-networks (seed {seed}), {time.perf_counter() - started:.0f} s,"
        f" measured {min(measured):.3f}-{max(measured):.3f} ms"
    )
    if stored is not None:
        print(
            f"  stored (seed {stored.seed}, n={stored.n}): MAPE {stored.mape:.1%}  "
            f"within ±10% {stored.within_10pct:.0%}  Spearman {stored.spearman:.3f}  "
            f"overhead {stored.overhead_ms:+.4f} ms"
        )
    print(
        f"  as shipped:   MAPE {shipped.mape:.1%}  within ±10% {shipped.within_10pct:.0%}  "
        f"Spearman {shipped.spearman:.3f}  overhead {table.overhead_ms:+.4f} ms"
    )
    print(
        f"  refitted:     MAPE {refit.mape:.1%}  within ±10% {refit.within_10pct:.0%}  "
        f"Spearman {refit.spearman:.3f}  overhead {refit_overhead:+.4f} ms"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tables", nargs="*", type=Path, default=SHIPPED)
    parser.add_argument("--n", type=int, default=100, help="fresh sub-networks per table")
    parser.add_argument("--seed", type=int, default=1, help="differs from the fit's seed 0")
    args = parser.parse_args(argv)
    if args.n < 2:
        parser.error("--n needs at least 2 sub-networks for a rank correlation")
    if not args.tables:
        print("no latency tables given and none shipped in latency_tables/", file=sys.stderr)
        return 2
    try:
        for path in args.tables:
            bench(path, args.n, args.seed)
    except FamcError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
