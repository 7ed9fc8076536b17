"""Release gates: pass/fail checks over a finished release, for CI release pipelines.

Gates run on what the release contains (test-split metrics, export records, measured latency), so a
failed gate always has its evidence in the same directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from famc.config import GatesConfig
from famc.metrics import Pair
from famc.report.release import GateResult, MemberRecord, MemberUpdate


def _nfr_limit(gate: str, limit: float | None, nfrs: Sequence[tuple[str, float]],
               where: str = "") -> list[GateResult]:  # fmt: skip
    """One gate per subject whose NFR (%) must not exceed ``limit`` (none when it is unset)."""
    if limit is None:
        return []
    return [
        GateResult(
            name=f"{gate}[{subject}]",
            passed=v <= limit,
            detail=f"NFR {v:.2f} %{where} (limit {limit:g} %)",
        )  # fmt: skip
        for subject, v in nfrs
    ]


def _top1_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    out = []
    for m in members:
        limit = g.min_top1.get(m.name) if isinstance(g.min_top1, dict) else g.min_top1
        if limit is not None:
            out.append(GateResult(name=f"min_top1[{m.name}]", passed=m.top1 >= limit,
                                  detail=f"Top-1 {m.top1:.2f} % (minimum {limit:g} %)"))  # fmt: skip
    return out


def _artifact_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    """One gate per requested artifact: a failed one fails the release (unavailable ones pass,
    saying where they can be checked)."""
    if not g.artifacts:
        return []
    return [
        GateResult(
            name=f"artifact[{m.name}.{rec.format}]",
            passed=rec.status != "failed",
            detail=f"{rec.status}: {rec.detail}",
        )  # fmt: skip
        for m in members
        for rec in m.artifact_list()
    ]


def _export_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    if g.min_export_agreement is None:
        return []
    out = []
    for m in members:
        for rec in m.artifact_list():
            if rec.status == "unavailable":
                continue
            agreement = None if rec.parity is None else rec.parity.top1_agreement
            ok = rec.status == "passed" and agreement is not None
            ok = ok and agreement >= g.min_export_agreement  # type: ignore[operator]
            shown = "n/a" if agreement is None else f"{agreement:.4f}"
            out.append(GateResult(
                name=f"min_export_agreement[{m.name}.{rec.format}]", passed=ok,
                detail=f"status {rec.status}, agreement {shown} (minimum {g.min_export_agreement:g})",
            ))  # fmt: skip
    return out


def _latency_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    if not g.latency_within_budget:
        return []
    out = []
    for m in members:
        lat = m.latency_ms
        if lat.budget is None or lat.measured is None:
            continue
        limit = lat.budget * (1 + g.latency_tolerance_pct / 100)
        out.append(GateResult(name=f"latency_within_budget[{m.name}]", passed=lat.measured <= limit,
                              detail=f"measured {lat.measured:.4f} ms (budget {lat.budget:g} ms "
                                     f"+{g.latency_tolerance_pct:g} %)"))  # fmt: skip
    return out


def check_gates(
    members: Sequence[MemberRecord], pairs: Sequence[Pair], gates: GatesConfig,
    update: Sequence[MemberUpdate] | None = None,
) -> list[GateResult]:  # fmt: skip
    """One result per configured gate and subject (pair, member, artifact or update)."""
    return [
        *_nfr_limit(
            "max_pairwise_nfr",
            gates.max_pairwise_nfr,
            [(f"{p.ref}→{p.target}", p.nfr) for p in pairs],
        ),
        *_top1_gates(members, gates),
        *_artifact_gates(members, gates),
        *_export_gates(members, gates),
        *_latency_gates(members, gates),
        *_nfr_limit(
            "max_update_nfr",
            gates.max_update_nfr,
            [(u.name, u.nfr) for u in update or []],
            f" from {gates.previous_release}",
        ),
    ]
