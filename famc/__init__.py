"""famc: compile a nested family of deployable models from one weight-sharing supernet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from famc.supernet.static import StaticNet


def load_member(directory: str | Path) -> StaticNet:
    """A family member directory (``arch.json`` + ``model.safetensors``) as a ready ``nn.Module``.

    Imported lazily so ``import famc`` stays cheap for tools that only read versions.
    """
    from famc.member import load_member as _load

    return _load(directory)
