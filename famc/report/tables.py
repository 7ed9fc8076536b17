"""The report's tables and notes as plain strings, shared by the HTML and Markdown renderers.

Building every table once keeps ``report.html`` and ``report.md`` from disagreeing on a number.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from famc.metrics import Pair
from famc.report.data import budget_text
from famc.report.release import FamilyManifest, MemberRecord

DASH = "–"
#: Export status → (symbol, words); the symbols are what CI logs and PR comments are scanned for.
#: The words a status cell holds; report.html draws them as coloured text badges (no emoji, which
#: render as empty boxes where no emoji font is installed).
STATUS_WORDS = ("passed", "failed", "unavailable")
NO_BASELINE = "No baseline family in this release (the search ran without `baseline: r0`)."
NO_MEASURED = "No latency was measured for this release (no `members[].latency_ms.measured`)."
NO_GATES = "No gates were evaluated for this release (family.json has no `gates`)."
NO_UPDATE = "No previous release was named (`gates.previous_release`)."
NOT_EXPORTED = "not exported"
NO_FRONT = "No member was searched against a member below, so there is no Top-1/NFR front."
NO_FINETUNE = ("No fine-tuning in this release (no `finetune:` in family.yaml): every member "
               "ships weights sliced from the supernet, so each holds the one below literally.")  # fmt: skip
NOT_SHARED = ("Fine-tuned members no longer share weights literally: each was trained apart, so "
              "the weights of a larger member are not a slice of those of a smaller one. Their "
              "architectures still nest (CAS).")  # fmt: skip


@dataclass(frozen=True)
class Table:
    headers: list[str]
    rows: list[list[str]]
    badge_column: int | None = None  # a column of STATUS_WORDS


def num(value: float | None, fmt: str) -> str:
    return DASH if value is None else format(value, fmt)


def inputs_table(manifest: FamilyManifest) -> Table:
    """One row per input; nested maps (tables, targets) flatten to ``key: subkey``."""
    rows = []
    for key, value in manifest.inputs.model_dump().items():
        if isinstance(value, dict):
            rows += [[f"{key}: {k}", str(v)] for k, v in value.items()]
        else:
            rows.append([key, str(value)])
    return Table(["input", "value"], rows)


def environment_table(manifest: FamilyManifest) -> Table:
    """The software and host the release was made with (``–``: not installed)."""
    env = manifest.environment.model_dump()
    threads = env.pop("thread_env")
    rows = [[k, DASH if v is None else str(v)] for k, v in env.items()]
    rows += [[k, v] for k, v in threads.items()]
    return Table(["component", "version / value"], rows)


def update_table(manifest: FamilyManifest) -> Table | None:
    """Each shared member against the previous release (``gates.previous_release``)."""
    if manifest.update is None:
        return None
    rows = [
        [u.name, f"{u.top1_old:.2f}", f"{u.top1_new:.2f}", f"{u.nfr:.2f}", f"{u.pfr:.2f}",
         num(u.latency_change_pct, "+.1f")]
        for u in manifest.update
    ]  # fmt: skip
    return Table(["member", "Top-1 old (%)", "Top-1 new (%)", "NFR old→new (%)",
                  "PFR old→new (%)", "latency change (%)"], rows)  # fmt: skip


def members_table(members: Sequence[MemberRecord]) -> Table:
    """The measured column appears only when a measurement exists, so it never reads all dashes."""
    with_measured = any(m.latency_ms.measured is not None for m in members)
    headers = ["member", "target", "resolution", "Top-1 test (%)", "search Top-1 (%)"]
    headers += ["FLOPs (M)", "params (M)", "predicted latency (ms)", "budget"]
    headers += ["measured latency (ms)"] * with_measured + ["contains"]
    rows = []
    for m in members:
        row = [m.name, m.target, str(m.arch.resolution), f"{m.top1:.2f}"]
        row += [f"{m.search_top1:.2f}", f"{m.flops / 1e6:.1f}", f"{m.params / 1e6:.2f}"]
        row += [num(m.latency_ms.predicted, ".3f"), budget_text(m)]
        row += [num(m.latency_ms.measured, ".3f")] * with_measured + [m.contains or DASH]
        rows.append(row)
    return Table(headers, rows)


def nfr_matrix(members: Sequence[MemberRecord], pairs: Sequence[Pair]) -> Table:
    """Rows are the smaller (reference) member, columns the larger (target); cells are NFR %."""
    nfr = {(p.ref, p.target): p.nfr for p in pairs}
    names = [m.name for m in members]
    rows = [
        [r] + [f"{nfr[r, t]:.2f}" if (r, t) in nfr else "" for t in names[1:]] for r in names[:-1]
    ]
    return Table(["ref \\ target", *names[1:]], rows)


def summary_table(manifest: FamilyManifest) -> Table:
    s = manifest.summary
    sides = [("REG-NAS", s.family)]
    if s.baseline is not None:
        sides.append(("baseline", s.baseline))
    rows = [[f"mean Top-1, {label} (%)", f"{side.mean_top1:.2f}"] for label, side in sides]
    rows += [
        [f"mean pairwise NFR, {label} (%)", f"{side.mean_pairwise_nfr:.3f}"]
        for label, side in sides
    ]
    if s.baseline is not None:
        rows.append(["NFR reduction vs baseline (%)", num(s.nfr_reduction_pct, ".2f")])
        rows.append(["Top-1 cost vs baseline (pp)", num(s.top1_cost, ".3f")])
    return Table(["metric", "value"], rows)


def latency_table(members: Sequence[MemberRecord]) -> Table | None:
    """Predicted vs measured per member (what was timed, where, and the notes); None when
    nothing was timed."""
    rows = []
    for m in members:
        lat = m.latency_ms
        if lat.measured_on is None:
            continue
        host = DASH if lat.host is None else lat.host.describe()
        rows.append([m.name, num(lat.predicted, ".3f"), num(lat.measured, ".3f"),
                     num(lat.measured_p90, ".3f"), num(lat.error_pct, "+.1f"),
                     f"±{lat.tolerance_pct:g}", lat.measured_on, host, lat.note or DASH])  # fmt: skip
    headers = ["member", "predicted (ms)", "measured median (ms)", "p90 (ms)", "error (%)",
               "tolerance (%)", "timed", "host", "note"]  # fmt: skip
    return Table(headers, rows) if rows else None


def export_table(members: Sequence[MemberRecord]) -> Table:
    """One row per (member, format); a member without export records gets one 'not exported' row."""
    headers = ["member", "format", "status", "top1 agreement", "max abs", "min atol"]
    headers += ["sha256", "seconds", "detail"]
    rows = []
    for m in members:
        records = m.artifact_list()
        if not records:
            rows.append([m.name, DASH, NOT_EXPORTED] + [""] * 6)
            continue
        for rec in records:
            p = rec.parity
            rows.append([
                m.name, rec.format, rec.status,
                num(None if p is None else p.top1_agreement, ".4f"),
                num(None if p is None else p.max_abs, ".3g"),
                num(None if p is None else p.min_atol, ".3g"),
                (rec.sha256 or DASH)[:12], num(rec.seconds, ".1f"),
                rec.detail if rec.warning is None else f"warning: {rec.warning}; {rec.detail}",
            ])  # fmt: skip
    return Table(headers, rows, badge_column=2)


def gates_table(manifest: FamilyManifest) -> Table | None:
    if manifest.gates is None:
        return None
    rows = [[g.name, "passed" if g.passed else "failed", g.detail] for g in manifest.gates]
    return Table(["gate", "result", "detail"], rows, badge_column=1)


def front_table(members: Sequence[MemberRecord]) -> Table | None:
    """Per member searched against references: the chosen point and the two paragons (search
    split), so the Top-1 given up and the NFR saved read off one row."""
    rows = []
    for m in members:
        f = m.search_front
        if f is None:
            continue
        rows.append([m.name, f.selection, str(f.evaluated), str(len(f.front)),
                     f"{f.chosen.top1:.2f} / {f.chosen.nfr:.2f}",
                     f"{f.top1_paragon.top1:.2f} / {f.top1_paragon.nfr:.2f}",
                     f"{f.nfr_paragon.top1:.2f} / {f.nfr_paragon.nfr:.2f}"])  # fmt: skip
    headers = ["member", "selection", "evaluated", "on the front", "chosen Top-1 / NFR (%)",
               "R0 paragon (best Top-1)", "R1 paragon (lowest NFR)"]  # fmt: skip
    return Table(headers, rows) if rows else None


def finetune_settings(manifest: FamilyManifest) -> str | None:
    f = manifest.finetune
    if f is None:
        return None
    return (f"{f.method}, {f.epochs} epoch(s) of {f.train_images} training images, lr {f.lr:g}, "
            f"α {f.alpha:g}, β {f.beta:g}, T {f.temperature:g}; {f.seconds:.0f} s")  # fmt: skip


def finetune_table(manifest: FamilyManifest) -> Table | None:
    """Test Top-1 and NFR against the member below, before and after fine-tuning."""
    f = manifest.finetune
    if f is None:
        return None
    rows = [
        [m.name, m.reference or DASH, f"{m.top1_before:.2f}", f"{m.top1_after:.2f}",
         num(m.nfr_before, ".2f"), num(m.nfr_after, ".2f")]
        for m in f.members
    ]  # fmt: skip
    s = f.summary_before
    rows.append(["family mean (NFR: all pairs)", DASH, f"{s.mean_top1:.2f}",
                 f"{manifest.summary.family.mean_top1:.2f}", f"{s.mean_pairwise_nfr:.3f}",
                 f"{manifest.summary.family.mean_pairwise_nfr:.3f}"])  # fmt: skip
    return Table(["member", "tuned against", "Top-1 before (%)", "Top-1 after (%)",
                  "NFR vs below before (%)", "NFR vs below after (%)"], rows)  # fmt: skip
