"""A family member on disk: ``arch.json`` + ``model.safetensors``, and ``load_member``.

A member directory is self-contained: ``arch.json`` (space preset, architecture, preprocessing and
the data it was evaluated on) and ``model.safetensors`` (the concrete weights with re-calibrated
BN), so a consumer needs neither the supernet nor famc's search code to run it.
"""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import save_file
from torch import nn

from famc.data import DataConfig
from famc.data.preprocessing import Preprocessing
from famc.errors import FamcError
from famc.io import Strict, atomic_path, load_json, read_tensors, write_text
from famc.space import ArchRecord, get_space
from famc.supernet import StaticNet, static_model
from famc.supernet.checkpoint import check_state

INFO_NAME = "arch.json"
REBUILD = "restore the member directory from its release or build it again"
WEIGHTS_NAME = "model.safetensors"


class MemberInfo(Strict):
    """``arch.json``: what the member is and how to feed it."""

    space: str
    arch: ArchRecord
    preprocessing: Preprocessing
    data: DataConfig


def write_member(directory: Path, info: MemberInfo, model: nn.Module) -> None:
    """Write ``arch.json`` and ``model.safetensors``, atomically each."""
    directory.mkdir(parents=True, exist_ok=True)
    write_text(directory / INFO_NAME, info.model_dump_json(indent=2) + "\n")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_NAME) as tmp:
        save_file(state, str(tmp), metadata={"space": info.space,
                                             "arch": info.arch.model_dump_json()})  # fmt: skip


def member_info(directory: str | Path) -> MemberInfo:
    """The validated ``arch.json`` of a member directory."""
    path = Path(directory) / INFO_NAME
    if not path.is_file():
        raise FamcError(f"{directory} is not a famc member directory (no {INFO_NAME})")
    return load_json(MemberInfo, path, "member description", REBUILD)


def load_member(directory: str | Path) -> StaticNet:
    """A family member as a ready ``nn.Module`` in eval mode."""
    directory = Path(directory)
    info = member_info(directory)
    space = get_space(info.space)
    model = static_model(space, space.arch_from_dict(info.arch.model_dump()))
    path = directory / WEIGHTS_NAME
    state = read_tensors(path, "member weights file", REBUILD)
    check_state(path, state, model.state_dict(), {})
    model.load_state_dict(state, strict=True, assign=True)
    return model.eval()
