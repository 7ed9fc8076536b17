"""Do the shipped latency tables predict what a user measures? Scored on networks no fit saw.

For each table: ``--n`` fresh random sub-networks (seed ``--seed``, not the table's validation
seed), each exported by the member export function and timed exactly as the build times a shipped
``model.onnx`` (``InferenceSession.run``, NumPy batch, the table's threads, median of 500 calls),
against ``LatencyTable.predict``. The issue-10 bar: ≥ 90 % within ±10 % and Spearman ≥ 0.95 on a
quiet host of the table's kind. ``--refit`` also times ``famc profile --refit`` into a temp file.

    .venv/bin/python bench/latency_accuracy.py               # both shipped tables, 100 archs
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from famc.latency import LatencyTable
from famc.latency.fit import score
from famc.latency.profile import measure_archs, refit, sample_archs
from famc.latency.runtimes import check_runtime, device_info
from famc.space import get_space

ROOT = Path(__file__).resolve().parents[1]
TABLES = sorted((ROOT / "latency_tables").glob("*.yaml"))


def bench(path: Path, n: int, seed: int) -> None:
    table = LatencyTable.load(path)
    m = table.metadata
    space, rt = get_space(m.space), check_runtime(m.runtime)
    archs = sample_archs(space, n, seed)
    started = time.perf_counter()
    measured = [t.median_ms for t in measure_archs(space, archs, rt, m.threads, m.batch, seed)]
    s = score([table.predict(a, space) for a in archs], measured)
    v = m.validation
    print(f"{path.name}: {m.runtime} {m.threads} thread(s), layers on {m.device.describe()}")
    if v is not None:
        print(f"  stored hold-out (fit {v.n_fit}, hold-out {v.n_holdout}, seed {v.seed}): "
              f"MAPE {v.mape:.1%}  within ±10% {v.within_10pct:.0%}  Spearman {v.spearman:.3f}  "
              f"worst {v.max_error_pct:.1f} %")  # fmt: skip
    print(f"  {n} fresh sub-networks (seed {seed}) on {device_info(rt).describe()}: "
          f"MAPE {s.mape:.1%}  within ±10% {s.within_10pct:.0%}  Spearman {s.spearman:.3f}  "
          f"worst {s.max_error_pct:.1f} %  ({min(measured):.3f}–{max(measured):.3f} ms, "
          f"{time.perf_counter() - started:.0f} s)")  # fmt: skip


def time_refit(path: Path, n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / path.name
        started = time.perf_counter()
        report = refit(path, n, out=out, progress=False)
        v = report.table.metadata.validation
        assert v is not None
        print(f"  --refit --validate {n}: {time.perf_counter() - started:.0f} s, hold-out MAPE "
              f"{v.mape:.1%}  within ±10% {v.within_10pct:.0%}  Spearman {v.spearman:.3f}")  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tables", nargs="*", type=Path, default=TABLES)
    ap.add_argument("--n", type=int, default=100, help="fresh sub-networks per table")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--refit", type=int, default=0, help="also time a --refit --validate N")
    args = ap.parse_args()
    if args.n < 2:
        ap.error("--n must be at least 2")
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    for path in args.tables:
        bench(path, args.n, args.seed)
        if args.refit:
            time_refit(path, args.refit)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
