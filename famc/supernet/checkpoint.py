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
from famc.io import atomic_path, first_line, read_torch
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
    fix = "point `supernet:` at a famc .safetensors or an OFA .pth state dict"
    if not path.is_file():
        raise FamcError(f"checkpoint {path} not found; {fix}")
    if path.suffix == ".safetensors":
        try:
            with safe_open(str(path), framework="pt") as f:
                tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
                return tensors, dict(f.metadata() or {})
        except Exception as exc:  # safetensors raises its own error types
            raise FamcError(f"checkpoint {path}: not a readable safetensors file "
                            f"({first_line(exc)}); {fix}") from None  # fmt: skip
    obj = read_torch(path, "checkpoint", fix)
    if isinstance(obj, Mapping) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise FamcError(f"checkpoint {path} does not hold a state dict of tensors; {fix}")
    return dict(obj), {}


def check_state(source: Path | str, state: Mapping[str, torch.Tensor],
                want: Mapping[str, torch.Tensor], renamed: Mapping[str, str]) -> None:  # fmt: skip
    """Refuse weights that do not fit ``want`` exactly: unknown, missing, misshapen, of another
    dtype, or not finite (a NaN weight would yield a release that is silently wrong)."""
    for name, value in state.items():
        if name not in want:
            raise FamcError(
                f"{source} does not fit this model: unexpected key {renamed.get(name, name)!r} "
                f"(shape {tuple(value.shape)}); is it for another preset?"
            )
        ref = want[name]
        if ref.shape != value.shape:
            raise FamcError(
                f"{source} does not fit this model: {name} has shape {tuple(value.shape)} in "
                f"the file but {tuple(ref.shape)} in the model"
            )
        if ref.dtype != value.dtype:
            raise FamcError(f"{source}: {name} is {value.dtype}, the model needs {ref.dtype}; "
                            "convert the checkpoint or use the matching one")  # fmt: skip
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise FamcError(f"{source}: {name} holds NaN or infinite values: the weights are "
                            "corrupt; restore them or train again")  # fmt: skip
    missing = [k for k in want if k not in state and not k.endswith("num_batches_tracked")]
    if missing:
        raise FamcError(
            f"{source} does not fit this model: missing key {missing[0]!r} "
            f"(shape {tuple(want[missing[0]].shape)}) and {len(missing) - 1} more"
        )


def load_checkpoint(net: ElasticNet, path: str | Path) -> dict[str, str]:
    """Load OFA ``.pth`` or famc ``.safetensors`` weights into ``net``; returns file metadata.

    A checkpoint that does not fit names the first mismatched key with both shapes.
    """
    raw, meta = read_state_dict(path)
    space = net.space
    if meta.get("space") and meta["space"] != space.name:
        raise FamcError(
            f"checkpoint {path} was trained for space {meta['space']!r}, not {space.name!r}: "
            f"use a supernet of preset {meta['space']!r} or another checkpoint"
        )
    skip = space.preset.checkpoint_skip  # keys of the reference checkpoint famc has no use for
    kept = {k: v for k, v in raw.items() if not any(re.search(p, k) for p in skip)}
    renamed = {normalise_key(key, space.preset): key for key in kept}
    state = {normalise_key(key, space.preset): value for key, value in kept.items()}
    check_state(f"checkpoint {path}", state, net.state_dict(), renamed)
    net.load_state_dict(state, strict=False)
    return meta


def save_checkpoint(net: nn.Module, path: str | Path, metadata: Mapping[str, str]) -> None:
    """Write ``net``'s weights as safetensors, atomically (temp file in the same dir, then rename)."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(Path(path)) as tmp:
        save_file(tensors, str(tmp), metadata=dict(metadata))
