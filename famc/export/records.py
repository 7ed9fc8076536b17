"""Typed records of a member's exports: ``artifacts.json`` and ``family.json``'s ``artifacts``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    SerializerFunctionWrapHandler,
    create_model,
    model_serializer,
)

from famc.data.preprocessing import Preprocessing
from famc.export.formats import FORMATS
from famc.export.parity import Parity, ParityPolicy
from famc.io import sha256_path, size_path

#: passed: built and matched PyTorch by its policy; failed: not produced, not runnable or out of
#: tolerance; unavailable: this host cannot have the runtime (it is produced where possible and
#: says how to check it where it runs).
Status = Literal["passed", "failed", "unavailable"]


class FileRecord(BaseModel):
    """One file (or ``.mlpackage`` directory) of a member, as written: what verify checks."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str  # relative to the member directory
    sha256: str
    size: int  # bytes (a directory: the sum of its files)


def file_record(path: Path, base: Path) -> FileRecord:
    return FileRecord(path=path.relative_to(base).as_posix(), sha256=sha256_path(path),
                      size=size_path(path))  # fmt: skip


def member_files(directory: Path) -> list[FileRecord]:
    """Every entry of a member directory (hidden in-flight temporaries aside), by name."""
    entries = sorted(p for p in directory.iterdir() if not p.name.startswith("."))
    return [file_record(p, directory) for p in entries]


class ArtifactRecord(BaseModel):
    """What happened to one format: the artifact (a path relative to the member directory), its
    hash and size, the tolerance it was held to, and how well it matched PyTorch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    path: str | None
    sha256: str | None
    size: int | None
    status: Status
    precision: str
    policy: ParityPolicy
    min_atol: float | None = None  # the smallest fail-level atol that would pass (same statistic)
    warning: str | None = None  # passed, but outside the policy's warn level
    parity: Parity | None = None
    seconds: float
    detail: str


class _Present(BaseModel):
    """Serialises only the formats that were asked for (absent ones are not ``null``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    @model_serializer(mode="wrap")
    def _present(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        return {k: v for k, v in handler(self).items() if v is not None}


def _artifacts_model() -> type[BaseModel]:
    """One optional record per row of ``FORMATS``: the registry decides which keys exist."""
    fields: dict[str, Any] = {name: (ArtifactRecord | None, None) for name in FORMATS}
    return create_model("Artifacts", __base__=_Present, **fields)


Artifacts = _artifacts_model()


def artifact_records(artifacts: BaseModel) -> list[ArtifactRecord]:
    """The records present in an ``Artifacts`` value, in ``FORMATS`` order."""
    found = (getattr(artifacts, name) for name in FORMATS)
    return [r for r in found if r is not None]


class ArtifactsManifest(BaseModel):
    """``artifacts.json``: a member directory's exports and the contract they were made for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    preprocessing: Preprocessing
    artifacts: Artifacts  # type: ignore[valid-type]
    files: list[FileRecord]  # the member's other files at export time (weights, golden I/O)
