"""The compiled family on disk: ``family.json`` (its schema), member directories, ``load_member``.

A member directory is self-contained: ``arch.json`` (space preset + architecture + preprocessing) and
``model.safetensors`` (the concrete weights with re-calibrated BN), so a consumer needs neither the
supernet nor famc's search code to run it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field
from safetensors.torch import load_file, save_file

from famc.errors import FamcError
from famc.io import atomic_path, write_text
from famc.space import describe, get_space
from famc.supernet.static import StaticMBV3

SCHEMA_VERSION = 1


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class FamilyPreprocessing(_Model):
    """Everything a consumer needs to feed a member: resize the image to the member's resolution
    (bilinear), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel, NCHW."""

    channels: int
    mean: list[float]
    std: list[float]
    resize: str = "bilinear"
    layout: str = "NCHW"
    resolution: dict[str, int] = Field(description="input resolution per member name")
    class_names: list[str]


class LatencyMs(_Model):
    predicted: float | None
    budget: float | None


class MemberRecord(_Model):
    name: str
    target: str
    arch: dict[str, Any]
    contains: str | None = Field(description="name of the member below, whose weights it holds")
    top1: float = Field(description="Top-1 (%) on the held-out test split")
    search_top1: float = Field(description="Top-1 (%) on the search-validation split")
    latency_ms: LatencyMs
    flops: int = Field(description="multiply-accumulates per image")
    params: int
    path: str | None = Field(description="member directory, relative to family.json")


class PairRecord(_Model):
    ref: str
    target: str
    nfr: float
    pfr: float
    rel_nfr: float
    nfi: float


class FamilyBlock(_Model):
    members: list[MemberRecord]
    pairwise: list[PairRecord]


class FamilyManifest(_Model):
    """``family.json``: what was built, from what, and how consistent it is."""

    schema_version: int = SCHEMA_VERSION
    famc_version: str
    created: str
    space: str
    preprocessing: FamilyPreprocessing
    members: list[MemberRecord]
    pairwise: list[PairRecord] = Field(description="test-split flips of every smaller→larger pair")
    baseline: FamilyBlock | None = Field(
        None, description="the family plain NAS finds (R0 per member, no CAS), for comparison"
    )
    summary: dict[str, Any]
    search: dict[str, Any]
    inputs: dict[str, Any]


def schema() -> dict[str, Any]:
    return FamilyManifest.model_json_schema()


def write_member(directory: Path, space: str, arch: dict[str, Any], model: torch.nn.Module,
                 preprocessing: dict[str, Any], data: dict[str, Any]) -> None:  # fmt: skip
    """Write ``arch.json`` (with the dataset it was evaluated on, so ``famc export`` can re-check
    parity) and ``model.safetensors``, atomically each."""
    directory.mkdir(parents=True, exist_ok=True)
    info = {"space": space, "arch": arch, "preprocessing": preprocessing, "data": data}
    write_text(directory / "arch.json", json.dumps(info, indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / "model.safetensors") as tmp:
        save_file(state, str(tmp), metadata={"space": space, "arch": json.dumps(arch)})


def member_info(directory: str | Path) -> dict[str, Any]:
    """The parsed ``arch.json`` of a member directory."""
    info_path = Path(directory) / "arch.json"
    if not info_path.is_file():
        raise FamcError(f"{directory} is not a famc member directory (no arch.json)")
    return json.loads(info_path.read_text())


def load_member(directory: str | Path) -> StaticMBV3:
    """A family member as a ready ``nn.Module`` in eval mode."""
    directory = Path(directory)
    info = member_info(directory)
    space = get_space(info["space"])
    arch = space.arch_from_dict(info["arch"])
    with torch.device("meta"):
        model = StaticMBV3(describe(space, arch))
    try:
        state = load_file(str(directory / "model.safetensors"))
        model.load_state_dict(state, strict=True, assign=True)
    except (OSError, RuntimeError) as exc:
        raise FamcError(f"{directory}/model.safetensors does not fit arch.json ({exc})") from None
    return model.eval()


if __name__ == "__main__":  # python -m famc.family > schemas/family.schema.json
    print(json.dumps(schema(), indent=2))
