"""A family member on disk: ``arch.json`` + ``model.safetensors``, and ``load_member``.

A member directory is self-contained: ``arch.json`` (space preset, architecture, preprocessing and
the data it was evaluated on) and ``model.safetensors`` (the concrete weights with re-calibrated
BN), so a consumer needs neither the supernet nor famc's search code to run it.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import ValidationError
from safetensors.torch import load_file, save_file
from torch import nn

from famc.data import DataConfig
from famc.data.preprocessing import Preprocessing
from famc.errors import FamcError, format_validation_error
from famc.io import Strict, atomic_path, read_text, write_text
from famc.space import ArchRecord, get_space
from famc.supernet import StaticNet, static_model

INFO_NAME = "arch.json"
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
    text = read_text(path, "member description")
    try:
        return MemberInfo.model_validate(json.loads(text))
    except json.JSONDecodeError as exc:
        raise FamcError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except ValidationError as exc:
        raise FamcError(format_validation_error(path, exc, "invalid member description")) from None


def load_member(directory: str | Path) -> StaticNet:
    """A family member as a ready ``nn.Module`` in eval mode."""
    directory = Path(directory)
    info = member_info(directory)
    space = get_space(info.space)
    model = static_model(space, space.arch_from_dict(info.arch.model_dump()))
    try:
        state = load_file(str(directory / WEIGHTS_NAME))
        model.load_state_dict(state, strict=True, assign=True)
    except (OSError, RuntimeError) as exc:
        raise FamcError(f"{directory}/{WEIGHTS_NAME} does not fit {INFO_NAME} ({exc})") from None
    return model.eval()
