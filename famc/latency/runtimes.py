"""The runtimes latency is measured on, as one registry, and one inference call on each of them.

``Runtime.session(graph, threads)`` prepares a graph once and returns a ``Call`` that runs one
inference the way a user runs the shipped artifact: ONNX Runtime's ``InferenceSession.run`` with a
NumPy batch, the thread count under test and default session options otherwise; PyTorch in
inference mode with channels-last tensors; a TensorRT engine on its own stream. What a call costs is
the one definition of latency (``famc.latency.measure``).
"""

from __future__ import annotations

import os
import platform
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from famc.errors import FamcError
from famc.export.onnx import INPUT_NAME, OUTPUT_NAME, onnx_model
from famc.latency.measure import Call
from famc.supernet.static import with_memory_format

TRACE_BATCH = 2  # graphs are traced at batch 2, as member artifacts are (see export_onnx)


class Device(BaseModel):
    """Where something was measured; latency from another machine is a different table."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cpu: str
    platform: str
    cores: int = Field(ge=1)
    gpu: str | None = None
    governor: str | None = None  # CPU frequency governor, where the OS exposes it

    def same_machine(self, other: Device) -> bool:
        """Same CPU model, core count and GPU: the table's figures are meant to hold here."""
        return (self.cpu, self.cores, self.gpu) == (other.cpu, other.cores, other.gpu)

    def describe(self) -> str:
        gpu = f", {self.gpu}" if self.gpu else ""
        return f"{self.cpu}, {self.cores} core(s){gpu}"


@dataclass(frozen=True)
class Graph:
    """One thing to time: a module and its input shape, and the shipped file of it if there is
    one (then that file is what runs, not a re-export)."""

    module: nn.Module
    shape: tuple[int, ...]
    artifact: Path | None = None

    def onnx_bytes(self) -> bytes:
        if self.artifact is not None:
            return self.artifact.read_bytes()
        example = torch.zeros((TRACE_BATCH, *self.shape[1:]))
        return onnx_model(self.module.eval(), example).SerializeToString()

    def numpy_input(self) -> np.ndarray:
        return np.random.default_rng(0).standard_normal(self.shape, dtype=np.float32)

    def torch_input(self) -> torch.Tensor:
        return torch.from_numpy(self.numpy_input())


def _missing_module(module: str, hint: str) -> list[str]:
    try:
        __import__(module)
    except (ImportError, OSError):
        return [f"{module} is not installed ({hint})"]
    return []


def _missing_cuda() -> list[str]:
    if torch.cuda.is_available():
        return []
    return [f"no CUDA GPU (torch.cuda.is_available() is False with torch {torch.__version__})"]


def _missing_provider(provider: str, hint: str) -> Callable[[], list[str]]:
    def missing() -> list[str]:
        absent = _missing_module("onnxruntime", hint)
        if absent:
            return absent
        import onnxruntime as ort

        if provider not in ort.get_available_providers():
            return [f"onnxruntime {ort.__version__} has no {provider} ({hint})"]
        return []

    return missing


def _version(module: str) -> Callable[[], str]:
    return lambda: str(__import__(module).__version__)


@dataclass(frozen=True)
class Runtime:
    """One runtime: what it needs, its version, which shipped artifact it runs, and how."""

    name: str
    gpu: bool
    torch_threads: bool  # PyTorch itself runs the graph, so it gets the thread count under test
    missing: Callable[[], list[str]]
    version: Callable[[], str]
    session: Callable[[Graph, int], Call]
    artifact: str | None  # the export format whose file the build times (None: the module)


def _ort_session(*providers: str) -> Callable[[Graph, int], Call]:
    def session(graph: Graph, threads: int) -> Call:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        sess = ort.InferenceSession(graph.onnx_bytes(), opts, providers=list(providers))
        feed = {INPUT_NAME: graph.numpy_input()}
        return lambda: sess.run(None, feed)

    return session


def _torch_session(device: str) -> Callable[[Graph, int], Call]:
    def session(graph: Graph, threads: int) -> Call:
        module, x = graph.module.eval().to(device), graph.torch_input().to(device)
        if x.dim() == 4:
            module = with_memory_format(module, torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

        def call() -> None:
            with torch.inference_mode():
                module(x)
            sync()

        return call

    return session


def _tensorrt_session(graph: Graph, threads: int) -> Call:
    """A fp32 engine (the shipped ``model.engine`` or one built from the graph), I/O bound once."""
    import tensorrt as trt

    from famc.export.tensorrt import serialized_engine

    if graph.artifact is not None:
        plan = graph.artifact.read_bytes()
    else:
        plan = serialized_engine(graph.onnx_bytes(), (graph.shape,) * 3)
    engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    context.set_input_shape(INPUT_NAME, graph.shape)
    inp = graph.torch_input().cuda()
    out = torch.empty(tuple(context.get_tensor_shape(OUTPUT_NAME)), device="cuda")
    context.set_tensor_address(INPUT_NAME, inp.data_ptr())
    context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
    stream = torch.cuda.Stream()

    def call() -> None:
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()

    call.keep = (engine, inp, out)  # type: ignore[attr-defined]  # buffers live with the call
    return call


_KIT = (
    "famc does not call it; time it on the device from a kit (`famc profile export-kit "
    "--format coreml`, then `famc profile import --tool csv --runtime coreml`)"
)


def _kit_only(graph: Graph, threads: int) -> Call:
    """A runtime only a device can run: its tables come from a kit (``famc.latency.kit``)."""
    raise FamcError(f"CoreML latency is measured on the Apple device: {_KIT}")


_ORT = "pip install onnxruntime"
_ORT_GPU = "pip install onnxruntime-gpu on a CUDA host"
RUNTIMES: dict[str, Runtime] = {
    "ort-cpu": Runtime("ort-cpu", False, False, lambda: _missing_module("onnxruntime", _ORT),
                       _version("onnxruntime"), _ort_session("CPUExecutionProvider"), "onnx"),
    "ort-cuda": Runtime("ort-cuda", True, False,
                        lambda: _missing_provider("CUDAExecutionProvider", _ORT_GPU)() + _missing_cuda(),
                        _version("onnxruntime"), _ort_session("CUDAExecutionProvider"), "onnx"),
    "ort-trt": Runtime("ort-trt", True, False,
                       lambda: _missing_provider("TensorrtExecutionProvider", _ORT_GPU + " with TensorRT")()
                       + _missing_cuda(), _version("onnxruntime"),
                       _ort_session("TensorrtExecutionProvider", "CUDAExecutionProvider"), "onnx"),
    "torch-cpu": Runtime("torch-cpu", False, True, lambda: [], lambda: str(torch.__version__),
                         _torch_session("cpu"), None),
    "torch-cuda": Runtime("torch-cuda", True, True, _missing_cuda,
                          lambda: f"{torch.__version__} (CUDA {torch.version.cuda})",
                          _torch_session("cuda"), None),
    "tensorrt": Runtime("tensorrt", True, False,
                        lambda: _missing_module("tensorrt", "pip install 'famc[tensorrt]'")
                        + _missing_cuda(), _version("tensorrt"), _tensorrt_session, "tensorrt"),
    "coreml": Runtime("coreml", False, False, lambda: [f"CoreML runs on Apple devices: {_KIT}"],
                      lambda: "unknown", _kit_only, "coreml"),
}  # fmt: skip


def unavailable(name: str) -> str | None:
    """Why runtime ``name`` cannot run on this host, or None when it can."""
    missing = RUNTIMES[name].missing()
    return "; ".join(missing) if missing else None


def check_runtime(name: str) -> Runtime:
    """The runtime called ``name`` if it can run here, else say exactly what is missing."""
    if name not in RUNTIMES:
        raise FamcError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    why = unavailable(name)
    if why:
        raise FamcError(
            f"runtime {name} cannot run on this host: {why}; "
            "use --runtime ort-cpu or torch-cpu, or profile on a host that has them"
        )
    return RUNTIMES[name]


def _governor() -> str | None:
    path = Path("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor")
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def device_info(runtime: Runtime) -> Device:
    """This host as a table records it: CPU model, platform, cores, governor and (for GPU
    runtimes) the GPU."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name() if runtime.gpu else None
    return Device(cpu=cpu, platform=platform.platform(), cores=os.cpu_count() or 1, gpu=gpu,
                  governor=_governor())  # fmt: skip


@contextmanager
def measuring(runtime: Runtime, threads: int, seed: int) -> Iterator[None]:
    """Fix PyTorch's threads and seed while measuring, and restore both for the caller.

    Torch runtimes get the thread count under test; otherwise PyTorch (only building graphs)
    gets one thread so it never competes with the runtime being timed. The seed makes the
    random weights of the timed graphs reproducible without disturbing the caller's RNG.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads if runtime.torch_threads else 1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(before)
