"""Read a release (``family.json`` + ``trace.jsonl``) into what the report renderers need.

``family.json`` is validated through the typed ``FamilyManifest``, so a report never silently
renders a malformed release.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from famc.errors import FamcError, format_validation_error
from famc.io import read_text
from famc.report.release import FamilyManifest, MemberRecord


@dataclass(frozen=True)
class TracePoint:
    """One evaluated architecture of a member's search; ``cost`` is in that member's units."""

    family: str
    member: str
    arch: dict[str, Any]
    cost: float
    top1: float
    nfr: float | None  # against the member's reference(s); None when searched without any
    partial: bool  # stopped by racing on a slice of the search split


@dataclass(frozen=True)
class Release:
    """A validated release; ``trace`` is None (not empty) when it has no trace.jsonl, so the report
    can say the search scatters are missing rather than show empty charts."""

    manifest: FamilyManifest
    trace: list[TracePoint] | None


def read_manifest(path: Path) -> FamilyManifest:
    """``family.json`` as the typed model; any defect is one line per problem naming the field."""
    text = read_text(path, "family.json (point at a release directory written by `famc build`)")
    try:
        return FamilyManifest.model_validate_json(text)
    except ValidationError as exc:
        raise FamcError(format_validation_error(path, exc, "not a valid family.json")) from None


def load_release(release_dir: Path) -> Release:
    """Validate ``family.json`` and parse ``trace.jsonl``; every problem names the file at fault."""
    manifest = read_manifest(release_dir / "family.json")
    return Release(manifest, _load_trace(release_dir / "trace.jsonl"))


def _load_trace(path: Path) -> list[TracePoint] | None:
    if not path.is_file():
        return None
    points = []
    for lineno, line in enumerate(read_text(path, "trace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            points.append(
                TracePoint(d["family"], d["member"], d["arch"], float(d["cost"]),
                           float(d["top1"]), None if d["nfr"] is None else float(d["nfr"]),
                           bool(d.get("partial", False)))
            )  # fmt: skip
        except (ValueError, KeyError, TypeError) as exc:
            raise FamcError(f"{path}:{lineno}: not a famc trace line ({exc!r})") from None
    return points


def budget_kind(member: MemberRecord) -> str:
    """Which cost model the member was searched under (``latency_ms``, ``mflops``, ...)."""
    return member.budget.model.name


def budget_text(member: MemberRecord) -> str:
    return member.budget.model.describe(member.budget.value)
