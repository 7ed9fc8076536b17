"""The runtimes latency is measured on, as one registry, and timing one graph on one of them.

A ``Timer`` runs ``k`` inferences of one graph and returns seconds per inference. Each runtime is set
up as it would be deployed (ONNX Runtime with the graph famc exports, PyTorch in inference mode with
channels-last tensors), with the thread count fixed explicitly so a 1-thread and a 2-thread table
really differ only in that.
"""

from __future__ import annotations

import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from famc.errors import FamcError
from famc.export.onnx import INPUT_NAME, OUTPUT_NAME, onnx_model
from famc.supernet.static import with_memory_format

Timer = Callable[[int], float]


class Device(BaseModel):
    """Where a table was measured; latency from another machine is a different table."""

    model_config = ConfigDict(extra="forbid", strict=True)

    cpu: str
    platform: str
    cores: int = Field(ge=1)
    gpu: str | None = None


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


def _version(module: str) -> Callable[[], str]:
    return lambda: str(__import__(module).__version__)


@dataclass(frozen=True)
class Runtime:
    """One runtime: what it needs, its version, and how a graph is timed on it."""

    name: str
    gpu: bool
    torch_threads: bool  # PyTorch itself runs the graph, so it gets the thread count under test
    missing: Callable[[], list[str]]
    version: Callable[[], str]
    timer: Callable[[nn.Module, torch.Tensor, int], Timer]


def _torch_timer(module: nn.Module, x: torch.Tensor, threads: int) -> Timer:
    cuda = x.is_cuda
    if x.dim() == 4:
        module = with_memory_format(module, torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)

    def run(k: int) -> float:
        with torch.inference_mode():
            if cuda:
                torch.cuda.synchronize()
            start = time.perf_counter()
            for _ in range(k):
                module(x)
            if cuda:
                torch.cuda.synchronize()
            return (time.perf_counter() - start) / k

    return run


def _cuda_timer(module: nn.Module, x: torch.Tensor, threads: int) -> Timer:
    return _torch_timer(module.cuda(), x.cuda(), threads)


def _ort_timer(module: nn.Module, x: torch.Tensor, threads: int) -> Timer:
    return _OrtTimer(onnx_model(module, x).SerializeToString(), x, threads)


def _trt_timer(module: nn.Module, x: torch.Tensor, threads: int) -> Timer:
    return _TensorRTTimer(onnx_model(module, x).SerializeToString(), x)


RUNTIMES: dict[str, Runtime] = {
    "ort-cpu": Runtime("ort-cpu", False, False,
                       lambda: _missing_module("onnxruntime", "pip install onnxruntime"),
                       _version("onnxruntime"), _ort_timer),
    "torch-cpu": Runtime("torch-cpu", False, True, lambda: [], lambda: str(torch.__version__),
                         _torch_timer),
    "torch-cuda": Runtime("torch-cuda", True, True, _missing_cuda,
                          lambda: f"{torch.__version__} (CUDA {torch.version.cuda})", _cuda_timer),
    "tensorrt": Runtime("tensorrt", True, False,
                        lambda: _missing_module("tensorrt", "pip install 'famc[tensorrt]'")
                        + _missing_cuda(), _version("tensorrt"), _trt_timer),
}  # fmt: skip


def check_runtime(name: str) -> Runtime:
    """The runtime called ``name`` if it can run here, else say exactly what is missing."""
    if name not in RUNTIMES:
        raise FamcError(f"unknown runtime {name!r}; choose one of {', '.join(RUNTIMES)}")
    rt = RUNTIMES[name]
    missing = rt.missing()
    if missing:
        raise FamcError(
            f"runtime {name} cannot run on this host: {'; '.join(missing)}; "
            "use --runtime ort-cpu or torch-cpu, or profile on a host that has them"
        )
    return rt


def device_info(runtime: Runtime) -> Device:
    """This host as a table records it: CPU model, OS platform, cores and (for GPU runtimes) GPU."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name() if runtime.gpu else None
    return Device(cpu=cpu, platform=platform.platform(), cores=os.cpu_count() or 1, gpu=gpu)


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


def make_timer(runtime: Runtime, module: nn.Module, shape: tuple[int, ...], threads: int) -> Timer:
    """A ``Timer`` for ``module`` on ``runtime`` with a fixed random input of ``shape``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    return runtime.timer(module.eval(), x, threads)


class _OrtTimer:
    """Session and I/O binding made once, so the timed loop is nothing but ``Run`` calls."""

    def __init__(self, model: bytes, x: torch.Tensor, threads: int) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.log_severity_level = 3
        self.sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        self.value = ort.OrtValue.ortvalue_from_numpy(x.numpy())
        self.binding = self.sess.io_binding()
        self.binding.bind_ortvalue_input(INPUT_NAME, self.value)
        self.binding.bind_output(OUTPUT_NAME)

    def __call__(self, k: int) -> float:
        run, binding = self.sess.run_with_iobinding, self.binding
        start = time.perf_counter()
        for _ in range(k):
            run(binding)
        return (time.perf_counter() - start) / k


class _TensorRTTimer:
    """A static-shape fp32 engine with its I/O buffers bound once, timed on its own stream."""

    def __init__(self, model: bytes, x: torch.Tensor) -> None:
        from famc.export.tensorrt import build_engine

        self.engine = build_engine(model, tuple(x.shape), tuple(x.shape), tuple(x.shape))
        self.context = self.engine.create_execution_context()
        self.context.set_input_shape(INPUT_NAME, tuple(x.shape))
        self.inp = x.cuda().contiguous()
        shape = tuple(self.context.get_tensor_shape(OUTPUT_NAME))
        self.out = torch.empty(shape, device="cuda")
        self.context.set_tensor_address(INPUT_NAME, self.inp.data_ptr())
        self.context.set_tensor_address(OUTPUT_NAME, self.out.data_ptr())
        self.stream = torch.cuda.Stream()

    def __call__(self, k: int) -> float:
        self.stream.synchronize()
        start = time.perf_counter()
        for _ in range(k):
            self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return (time.perf_counter() - start) / k
