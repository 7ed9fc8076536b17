"""Typed records of a member's exports: ``artifacts.json`` and ``family.json``'s ``artifacts``."""

from __future__ import annotations

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
from famc.export.parity import Parity

Status = Literal["passed", "parity_failed", "export_failed", "deferred", "skipped"]


class ArtifactRecord(BaseModel):
    """What happened to one format: the artifact (a path relative to the member directory), its
    hash, the tolerance it was held to, and how well it matched PyTorch."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: str
    path: str | None
    sha256: str | None
    status: Status
    atol: float
    parity: Parity | None
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
