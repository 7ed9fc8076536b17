"""Loading and saving supernet weights: famc ``.safetensors`` and Once-for-All ``.pth`` state dicts.

OFA's own code renames keys between its static and dynamic layers (``.mobile_inverted_conv.`` →
``.conv.``, ``.bn.bn.`` → ``.bn.``, ...); famc's layout is the normalised one, and each preset lists
the renames that map its reference implementation's spellings onto it
(``Preset.checkpoint_renames``) and the keys it has no counterpart for (``Preset.checkpoint_skip``,
e.g. AttentiveNAS's unused ``bn_tracking`` buffers). A ``{"state_dict": ...}`` wrapper is accepted
too. ``.pth``
files are read with ``weights_only=True``: a checkpoint can never run code.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn

from famc.errors import FamcError
from famc.io import atomic_path
from famc.space import Preset

if TYPE_CHECKING:
    from famc.supernet.network import ElasticNet


def normalise_key(key: str, preset: Preset) -> str:
    """Map a reference implementation's spelling of a parameter name to famc's."""
    for pattern, replacement in preset.checkpoint_renames:
        key = re.sub(pattern, replacement, key)
    return key


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and (for safetensors) string metadata of a checkpoint file."""
    path = Path(path)
    if not path.is_file():
        raise FamcError(f"checkpoint {path} not found")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
                return tensors, dict(f.metadata() or {})
        except Exception as exc:  # safetensors raises its own error types
            raise FamcError(
                f"checkpoint {path} is not a readable safetensors file ({exc})"
            ) from None
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise FamcError(
            f"checkpoint {path} could not be read as a weights-only PyTorch state dict ({exc})"
        ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FamcError(f"checkpoint {path} does not hold a state dict of tensors")
    return dict(obj), {}


def load_checkpoint(net: ElasticNet, path: str | Path) -> dict[str, str]:
    """Load OFA ``.pth`` or famc ``.safetensors`` weights into ``net``; returns file metadata.

    A checkpoint that does not fit names the first mismatched key with both shapes.
    """
    raw, meta = read_state_dict(path)
    want = net.state_dict()
    space = net.space
    if meta.get("space") and meta["space"] != space.name:
        raise FamcError(
            f"checkpoint {path} was trained for space {meta['space']!r}, not {space.name!r}: "
            f"use a supernet of preset {meta['space']!r} or another checkpoint"
        )
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        if any(re.search(pattern, key) for pattern in space.preset.checkpoint_skip):
            continue
        name = normalise_key(key, space.preset)
        if name not in want:
            raise FamcError(
                f"checkpoint {path} does not fit this supernet: unexpected key {key!r} "
                f"(shape {tuple(value.shape)}); is it for another preset?"
            )
        if want[name].shape != value.shape:
            raise FamcError(
                f"checkpoint {path} does not fit this supernet: {name} has shape "
                f"{tuple(value.shape)} in the file but {tuple(want[name].shape)} in the model"
            )
        state[name] = value
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise FamcError(
            f"checkpoint {path} does not fit this supernet: missing key {missing[0]!r} "
            f"(shape {tuple(want[missing[0]].shape)}) and {len(missing) - 1} more"
        )
    net.load_state_dict(state, strict=False)
    return meta


def save_checkpoint(net: nn.Module, path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write ``net``'s weights as safetensors, atomically (temp file in the same dir, then rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata))
