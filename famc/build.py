"""``famc build``: the stages, composed.

    config → prepare → search → evaluate → [fine-tune] → ship (weights, exports, latency) → report

Each stage is one module taking and returning typed values (``famc.prepare``,
``famc.search.stage``, ``famc.evaluate.stage``, ``famc.finetune.stage`` (only with a
``finetune:`` section), ``famc.ship``, ``famc.report.stage``). The release
is written into a hidden staging directory and renamed into place only when complete.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from famc.errors import GateFailure
from famc.evaluate.backends import BackendSettings
from famc.evaluate.cache import CachedEvaluation
from famc.evaluate.stage import evaluate
from famc.finetune.stage import finetune
from famc.io import check_output_dir, staged_directory
from famc.prepare import prepare
from famc.progress import Reporter
from famc.report.stage import report
from famc.search.stage import search
from famc.ship import ship


def build(config_path: str | Path, *, out: str | Path | None = None, force: bool = False,
          gates: bool = True, reporter: Reporter | None = None,
          allow_split_overlap: bool = False, log: Callable[[str], None] = print,
          workers: int | None = None, ray_address: str | None = None) -> Path:  # fmt: skip
    """Search, export and report the family; returns the release directory. Raises
    ``GateFailure`` after writing everything when a gate fails. ``workers`` (default: the config's
    ``evaluation.workers``) and ``ray_address`` evaluate candidates on a Ray cluster."""
    started = time.perf_counter()
    p = prepare(config_path, allow_split_overlap)
    out_dir = Path(out if out is not None else p.cfg.out)
    check_output_dir(out_dir, force, p.input_paths())
    settings = BackendSettings(workers or p.cfg.evaluation.workers or 1, ray_address)
    ev = CachedEvaluation(p, settings, log)
    try:
        for note in [*p.notes, *ev.notes()]:
            log(note)
        t = time.perf_counter()
        families = search(p, ev.search_vectors, reporter or Reporter("off"))
        log(f"search: {families.describe()}; {ev.evaluated} evaluations run, {ev.cache.hits} "
            f"from the cache, in {time.perf_counter() - t:.0f} s")  # fmt: skip
        t = time.perf_counter()
        evaluated = evaluate(p, families, ev, log)
    finally:
        ev.close()
    tuned = finetune(p, evaluated, ev, log)
    if tuned is not None:
        evaluated = tuned.evaluated
    with staged_directory(out_dir) as tmp:
        shipped = ship(p, evaluated, ev, tmp, log, None if tuned is None else tuned.models)
        manifest = report(p, families, evaluated, ev, shipped, tmp, gates=gates, started=started,
                          tuned=tuned)  # fmt: skip
    log(f"test split, exports, latency and report in {time.perf_counter() - t:.0f} s; "
        f"{time.perf_counter() - started:.0f} s in all")  # fmt: skip
    for host_note in dict.fromkeys(
        m.latency_ms.note for m in manifest.members if m.latency_ms.note
    ):
        log(f"latency: {host_note}; re-fit the table here with `famc profile --refit`")
    failed = [g for g in manifest.gates or [] if not g.passed]
    if failed:
        raise GateFailure([f"gate {g.name} failed: {g.detail}" for g in failed], out_dir)
    return out_dir
