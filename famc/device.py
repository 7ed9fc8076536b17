"""Where training runs: ``cpu``, ``cuda`` or ``auto`` (CUDA when this host has it, else CPU).

The device never touches what decides a run's sequence: the generators of sampling, batch order,
dropout masks and initial weights stay on the CPU, so a run trains the same architectures on the
same batches from the same weights on every device. The arithmetic does not: GPU kernels sum in
other orders than CPU ones (and cuDNN may use TF32), so GPU losses and accuracies are close to a
CPU run's, never bit-identical. CPU runs are unchanged by this module (``to_device`` is a no-op).
"""

from __future__ import annotations

import ctypes
from typing import Literal

import torch

from famc.errors import FamcError

DeviceName = Literal["cpu", "cuda", "auto"]
DEVICES: tuple[str, ...] = ("cpu", "cuda", "auto")


def cuda_missing() -> str | None:
    """Why this process cannot use CUDA, or None when it can."""
    if torch.cuda.is_available():
        return None
    if torch.version.cuda is None:
        return f"this torch {torch.__version__} is built without CUDA"
    return f"torch {torch.__version__} sees no CUDA GPU"


def resolve_device(name: str, where: str, fix: str) -> torch.device:
    """The device ``name`` stands for here; ``cuda`` without CUDA is an error that names
    ``where`` it was asked for and the ``fix``."""
    if name not in DEVICES:
        raise FamcError(f"{where}: unknown device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if cuda_missing() is None else "cpu")
    why = cuda_missing() if name == "cuda" else None
    if why is not None:
        raise FamcError(f"{where}: CUDA is not available here: {why} (got 'cuda'); {fix}")
    return torch.device(name)


def to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``t`` on ``device`` (itself, no copy, when already there). A CPU tensor bound for a GPU goes
    through pinned memory, so the copy runs asynchronously to the host."""
    if t.device.type == "cpu" and device.type != "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def device_label(device: torch.device) -> str:
    """``cpu`` or ``cuda (NVIDIA H100 80GB HBM3)``: what a results file records."""
    if device.type != "cuda":
        return device.type
    return f"cuda ({torch.cuda.get_device_name(device)})"


#: glibc's mallopt parameters (malloc.h): the mmap allocation count limit and the heap trim
#: threshold.
_M_MMAP_MAX, _M_TRIM_THRESHOLD = -4, -1


def keep_freed_memory() -> bool:
    """Serve tensor memory from the heap and keep it mapped after it is freed (glibc only).

    glibc maps every allocation above its mmap threshold (128 KiB to 32 MiB) afresh and unmaps
    it when freed, so every batch's activations are page-faulted and zero-filled again: in CPU
    evaluation that cost as much as the convolutions (bench/eval_throughput.py measures it). The
    heap then keeps its peak size for reuse instead of returning it to the OS, as jemalloc or
    tcmalloc would; peak memory is unchanged. Returns whether the setting took effect.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows): its allocator is left alone
        return False
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30))
