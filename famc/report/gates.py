"""Release gates: pass/fail checks over a finished release, for CI release pipelines.

Gates run on what the release contains (test-split metrics, export records, measured latency), so a
failed gate always has its evidence in the same directory.
"""

from __future__ import annotations

from collections.abc import Sequence

from famc.config import GatesConfig
from famc.export import ArtifactRecord, artifact_records
from famc.metrics import Pair
from famc.report.release import GateResult, MemberRecord


def _pair_gates(pairs: Sequence[Pair], g: GatesConfig) -> list[GateResult]:
    if g.max_pairwise_nfr is None:
        return []
    return [
        GateResult(
            name=f"max_pairwise_nfr[{p.ref}→{p.target}]",
            passed=p.nfr <= g.max_pairwise_nfr,
            detail=f"NFR {p.nfr:.2f} % (limit {g.max_pairwise_nfr:g} %)",
        )  # fmt: skip
        for p in pairs
    ]


def _top1_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    out = []
    for m in members:
        limit = g.min_top1.get(m.name) if isinstance(g.min_top1, dict) else g.min_top1
        if limit is not None:
            out.append(GateResult(name=f"min_top1[{m.name}]", passed=m.top1 >= limit,
                                  detail=f"Top-1 {m.top1:.2f} % (minimum {limit:g} %)"))  # fmt: skip
    return out


def _export_gates(members: Sequence[MemberRecord], g: GatesConfig) -> list[GateResult]:
    if g.min_export_agreement is None:
        return []
    out = []
    for m in members:
        records: list[ArtifactRecord] = [] if m.artifacts is None else artifact_records(m.artifacts)
        for rec in records:
            if rec.status in ("deferred", "skipped"):
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
    members: Sequence[MemberRecord], pairs: Sequence[Pair], gates: GatesConfig
) -> list[GateResult]:
    """One result per configured gate and subject (pair, member or artifact)."""
    return [
        *_pair_gates(pairs, gates),
        *_top1_gates(members, gates),
        *_export_gates(members, gates),
        *_latency_gates(members, gates),
    ]
