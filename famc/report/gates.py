"""Release gates: pass/fail checks over a finished ``family.json``, for CI release pipelines.

Gates run on what the release contains (test-split metrics, export records, measured latency), so a
failed gate always has its evidence in the same directory.
"""

from __future__ import annotations

from typing import Any

from famc.config import GatesConfig


def _gate(name: str, passed: bool, detail: str) -> dict[str, Any]:
    return {"name": name, "passed": passed, "detail": detail}


def check_gates(family: dict[str, Any], gates: GatesConfig) -> list[dict[str, Any]]:
    """One result per configured gate and subject (pair, member or artifact)."""
    out: list[dict[str, Any]] = []
    if gates.max_pairwise_nfr is not None:
        for pair in family["pairwise"]:
            ok = pair["nfr"] <= gates.max_pairwise_nfr
            out.append(_gate(f"max_pairwise_nfr[{pair['ref']}→{pair['target']}]", ok,
                             f"NFR {pair['nfr']:.2f} % (limit {gates.max_pairwise_nfr:g} %)"))  # fmt: skip
    if gates.min_top1 is not None:
        for m in family["members"]:
            limit = (
                gates.min_top1.get(m["name"])
                if isinstance(gates.min_top1, dict)
                else gates.min_top1
            )
            if limit is not None:
                out.append(_gate(f"min_top1[{m['name']}]", m["top1"] >= limit,
                                 f"Top-1 {m['top1']:.2f} % (minimum {limit:g} %)"))  # fmt: skip
    if gates.min_export_agreement is not None:
        for m in family["members"]:
            for fmt, rec in (m.get("artifacts") or {}).items():
                if rec["status"] in ("deferred", "skipped"):
                    continue
                agreement = (rec.get("parity") or {}).get("top1_agreement")
                ok = (
                    rec["status"] == "passed"
                    and agreement is not None
                    and (agreement >= gates.min_export_agreement)
                )
                shown = "n/a" if agreement is None else f"{agreement:.4f}"
                out.append(_gate(f"min_export_agreement[{m['name']}.{fmt}]", ok,
                                 f"status {rec['status']}, agreement {shown} "
                                 f"(minimum {gates.min_export_agreement:g})"))  # fmt: skip
    if gates.latency_within_budget:
        for m in family["members"]:
            lat = m["latency_ms"]
            if lat.get("budget") is None or lat.get("measured") is None:
                continue
            limit = lat["budget"] * (1 + gates.latency_tolerance_pct / 100)
            out.append(_gate(f"latency_within_budget[{m['name']}]", lat["measured"] <= limit,
                             f"measured {lat['measured']:.4f} ms (budget {lat['budget']:g} ms "
                             f"+{gates.latency_tolerance_pct:g} %)"))  # fmt: skip
    return out
