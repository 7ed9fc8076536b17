"""Read a release (``family.json`` + ``trace.jsonl``) into what the report renderers need.

``family.json`` is validated through ``FamilyManifest`` so a report never silently renders a
malformed release; optional blocks that later stages add (``members[].artifacts``,
``latency_ms.measured``, ``gates``, the member ``budget``) ride in the schema's extra fields and are
read here, in one place, so both renderers agree on what "absent" means.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from famc.errors import FamcError
from famc.family import FamilyManifest, MemberRecord

#: Axis label for a member's search cost, by its budget kind (``trace.jsonl`` ``cost`` units).
COST_LABELS = {
    "latency_ms": "predicted latency (ms)",
    "mflops": "MFLOPs",
    "mparams": "params (M)",
}
BUDGET_UNITS = {"latency_ms": "ms", "mflops": "MFLOPs", "mparams": "M params"}


@dataclass(frozen=True)
class TracePoint:
    """One evaluated architecture of a member's search; ``cost`` is in that member's units."""

    family: str
    member: str
    arch: dict[str, Any]
    cost: float
    top1: float


@dataclass(frozen=True)
class Release:
    """A validated release; ``trace`` is None (not empty) when it has no trace.jsonl, so the report
    can say the search scatters are missing rather than show empty charts."""

    manifest: FamilyManifest
    trace: list[TracePoint] | None


def load_release(release_dir: Path) -> Release:
    """Validate ``family.json`` and parse ``trace.jsonl``; every problem names the file at fault."""
    path = release_dir / "family.json"
    if not path.is_file():
        raise FamcError(f"{path} not found: point at a release directory written by `famc build`")
    try:
        manifest = FamilyManifest.model_validate_json(path.read_text())
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "document"
        raise FamcError(f"{path} is not a valid family.json ({where}: {err['msg']})") from None
    return Release(manifest, _load_trace(release_dir / "trace.jsonl"))


def _load_trace(path: Path) -> list[TracePoint] | None:
    if not path.is_file():
        return None
    points = []
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            points.append(
                TracePoint(d["family"], d["member"], d["arch"], float(d["cost"]), float(d["top1"]))
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise FamcError(f"{path}:{lineno}: not a famc trace line ({exc!r})") from None
    return points


def extra(model: BaseModel, key: str) -> Any:
    """An optional field, or None: it works whether the schema declares it or it rides in the
    extras (``extra="allow"``), so the report keeps working when the schema adopts it."""
    return getattr(model, key, None)


def measured_ms(member: MemberRecord) -> float | None:
    return extra(member.latency_ms, "measured")


def budget_kind(member: MemberRecord) -> str | None:
    """``latency_ms``/``mflops``/``mparams``: which cost model the member was searched under."""
    budget = extra(member, "budget") or {}
    return next(iter(budget), None)


def budget_text(member: MemberRecord) -> str | None:
    budget = extra(member, "budget") or {}
    if budget:
        kind, value = next(iter(budget.items()))
        return f"{value:g} {BUDGET_UNITS.get(kind, kind)}"
    return None if member.latency_ms.budget is None else f"{member.latency_ms.budget:g} ms"


def artifacts(member: MemberRecord) -> list[dict[str, Any]] | None:
    """Export records of a member: a dict keyed by format (as in ``artifacts.json``) or a list."""
    found = extra(member, "artifacts")
    if found is None:
        return None
    return list(found.values()) if isinstance(found, dict) else list(found)


def gates(manifest: FamilyManifest) -> list[dict[str, Any]] | None:
    return extra(manifest, "gates")
