"""What a CI pipeline reads from a build: a JSON summary, JUnit XML, a GitHub step summary and
error annotations, all derived from the typed ``family.json``."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from xml.etree import ElementTree as ET

from famc.export import ArtifactRecord
from famc.report.release import FamilyManifest, GateResult

MAX_ANNOTATIONS = 10


def _artifacts(manifest: FamilyManifest) -> list[tuple[str, ArtifactRecord]]:
    return [(m.name, rec) for m in manifest.members for rec in m.artifact_list()]


def failed_gates(manifest: FamilyManifest) -> list[GateResult]:
    return [g for g in manifest.gates or [] if not g.passed]


def build_summary(manifest: FamilyManifest, release: Path) -> dict[str, Any]:
    """``famc build --json``: one document a pipeline can parse."""
    s = manifest.summary
    return {
        "release": str(release),
        "passed": not failed_gates(manifest),
        "space": manifest.space,
        "members": [
            {
                "name": m.name,
                "top1": m.top1,
                "mflops": round(m.flops / 1e6, 3),
                "contains": m.contains,
                "latency_ms": m.latency_ms.model_dump(),
                "artifacts": {r.format: r.status for r in m.artifact_list()},
            }
            for m in manifest.members
        ],  # fmt: skip
        "summary": s.model_dump(mode="json"),
        "gates": None if manifest.gates is None else [g.model_dump() for g in manifest.gates],
        "family_json": str(release / "family.json"),
        "report": str(release / "report.html"),
    }


def junit_xml(manifest: FamilyManifest) -> str:
    """JUnit XML: a test case per gate and per artifact (an unavailable artifact is skipped)."""
    root = ET.Element("testsuites", name="famc build")
    gates = ET.SubElement(root, "testsuite", name="gates")
    for g in manifest.gates or []:
        case = ET.SubElement(gates, "testcase", classname="famc.gates", name=g.name)
        if not g.passed:
            ET.SubElement(case, "failure", message=g.detail).text = g.detail
    artifacts = ET.SubElement(root, "testsuite", name="artifacts")
    for member, rec in _artifacts(manifest):
        case = ET.SubElement(artifacts, "testcase", classname="famc.artifacts",
                             name=f"{member}.{rec.format}")  # fmt: skip
        if rec.status == "failed":
            ET.SubElement(case, "failure", message=rec.detail).text = rec.detail
        elif rec.status == "unavailable":
            ET.SubElement(case, "skipped", message=rec.detail)
    for suite in (gates, artifacts):
        cases = list(suite)
        suite.set("tests", str(len(cases)))
        suite.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        suite.set("skipped", str(sum(c.find("skipped") is not None for c in cases)))
    root.set("tests", str(int(gates.get("tests", "0")) + int(artifacts.get("tests", "0"))))
    root.set("failures", str(int(gates.get("failures", "0")) + int(artifacts.get("failures", "0"))))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _escape(text: str, prop: bool = False) -> str:
    """GitHub workflow-command escaping (data; properties also escape ``:`` and ``,``)."""
    text = text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")
    return text.replace(":", "%3A").replace(",", "%2C") if prop else text


def github_annotations(manifest: FamilyManifest) -> list[str]:
    """``::error`` lines for the failed gates, at most ``MAX_ANNOTATIONS``."""
    return [f"::error title={_escape(f'famc gate {g.name}', True)}::{_escape(g.detail)}"
            for g in failed_gates(manifest)[:MAX_ANNOTATIONS]]  # fmt: skip
