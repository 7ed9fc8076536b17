"""``famc verify``: a release, or one member directory, re-checked against records it cannot edit.

A release is checked against ``family.json`` (itself checked against the digest written beside
it): every member directory and file must be there with its recorded sha256 and size, and every
artifact this host can run must reproduce the golden outputs within the recorded tolerance. A
member directory outside a release (``famc export``) is checked against its ``artifacts.json``.
"""

from __future__ import annotations

from pathlib import Path

from famc.errors import FamcError
from famc.export.records import ArtifactsManifest, FileRecord, artifact_records
from famc.export.verify import MANIFEST_NAME, VerifyResult, verify_member
from famc.io import load_json
from famc.member import INFO_NAME
from famc.report.data import read_manifest
from famc.report.release import DIGEST_NAME, FAMILY_JSON, MemberRecord, digest_line

Finding = tuple[str, VerifyResult]  # (member name, or "release"; the check)


def verify(path: Path) -> list[Finding]:
    """Every check of ``path`` (a release or a member directory), failures included."""
    path = Path(path)
    if not path.is_dir():
        raise FamcError(f"{path}: not a directory; point famc verify at a release or a member")
    if (path / INFO_NAME).is_file() or (path / MANIFEST_NAME).is_file():
        release = path.parent.parent
        if (release / FAMILY_JSON).is_file():
            return _verify_release(release, only=path.name)
        return [(path.name, r) for r in _verify_standalone(path)]
    if (path / FAMILY_JSON).exists() or (path / "members").is_dir():
        return _verify_release(path)
    raise FamcError(
        f"{path}: neither a release ({FAMILY_JSON}) nor a member directory ({INFO_NAME}); "
        "point famc verify at what famc build or famc export wrote"
    )


def _failed(detail: str) -> list[Finding]:
    return [("release", VerifyResult(subject=FAMILY_JSON, status="failed", detail=detail))]


def _verify_release(release: Path, only: str | None = None) -> list[Finding]:
    manifest_path, digest = release / FAMILY_JSON, release / DIGEST_NAME
    if not manifest_path.is_file():
        return _failed(f"{manifest_path} is missing: the release cannot be checked")
    if not digest.is_file() or digest.read_text() != digest_line(manifest_path):
        return _failed(f"{manifest_path} does not match {DIGEST_NAME} (edited or incomplete)")
    manifest = read_manifest(manifest_path)
    findings: list[Finding] = []
    names = {m.name for m in manifest.members}
    for m in manifest.members:
        if only is None or m.name == only:
            findings += [(m.name, r) for r in _verify_recorded(release, m)]
    members = release / "members"
    stray = (
        sorted(p.name for p in members.iterdir() if p.name not in names) if members.is_dir() else []
    )
    if stray and only is None:
        note = f"ignored {len(stray)} unrecorded entr(y/ies) in members/: {', '.join(stray)}"
        findings.append(("release", VerifyResult(subject="members", status="passed", detail=note)))
    return findings


def _verify_recorded(release: Path, m: MemberRecord) -> list[VerifyResult]:
    """One member against its records in family.json (artifact paths there are release-relative)."""
    if m.path is None or m.files is None:
        return [VerifyResult(subject="files", status="failed", detail="no files recorded")]
    directory = release / m.path
    local = [r.model_copy(update={"path": Path(r.path).name}) if r.path else r
             for r in m.artifact_list()]  # fmt: skip
    return verify_member(directory, m.files, local)


def _verify_standalone(directory: Path) -> list[VerifyResult]:
    manifest = load_json(ArtifactsManifest, directory / MANIFEST_NAME, "artifacts manifest",
                         "re-export the member with famc export")  # fmt: skip
    records = artifact_records(manifest.artifacts)
    files = list(manifest.files) + [
        FileRecord(path=r.path, sha256=r.sha256, size=r.size)
        for r in records
        if r.path and r.sha256 and r.size is not None
    ]
    return verify_member(directory, files, records)
