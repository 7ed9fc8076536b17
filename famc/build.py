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
          allow_split_overlap: bool = False, log: Callable[[str], None] = print) -> Path:  # fmt: skip
    """Search, export and report the family; returns the release directory. Raises
    ``GateFailure`` after writing everything when a gate fails."""
    started = time.perf_counter()
    p = prepare(config_path, allow_split_overlap)
    out_dir = Path(out if out is not None else p.cfg.out)
    check_output_dir(out_dir, force, p.input_paths())
    ev = CachedEvaluation(p)
    for note in [*p.notes, *ev.notes()]:
        log(note)
    families = search(p, ev.search_vectors, reporter or Reporter("off"))
    evaluated = evaluate(p, families, ev, log)
    tuned = finetune(p, evaluated, ev, log)
    if tuned is not None:
        evaluated = tuned.evaluated
    with staged_directory(out_dir) as tmp:
        shipped = ship(p, evaluated, ev, tmp, log, None if tuned is None else tuned.models)
        manifest = report(p, families, evaluated, ev, shipped, tmp, gates=gates, started=started,
                          tuned=tuned)  # fmt: skip
    for host_note in dict.fromkeys(
        m.latency_ms.note for m in manifest.members if m.latency_ms.note
    ):
        log(f"latency: {host_note}; re-fit the table here with `famc profile --refit`")
    failed = [g for g in manifest.gates or [] if not g.passed]
    if failed:
        raise GateFailure([f"gate {g.name} failed: {g.detail}" for g in failed], out_dir)
    return out_dir
