"""Timing one graph on one runtime: a ``Timer`` runs ``k`` inferences and returns s/inference.

Each runtime is set up as it would be deployed (ONNX Runtime with a dynamic batch axis and the
default graph optimisations, PyTorch in inference mode with channels-last tensors), with the
thread count fixed explicitly so a 1-thread and a 2-thread table really differ only in that.
"""

from __future__ import annotations

import io
import os
import platform
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from famc.errors import FamcError
from famc.latency.table import RUNTIMES, Device, Runtime

Timer = Callable[[int], float]


def check_runtime(runtime: str) -> Runtime:
    """Return ``runtime`` if it can run here, else say exactly what is missing."""
    if runtime not in RUNTIMES:
        raise FamcError(f"unknown runtime {runtime!r}; choose one of {', '.join(RUNTIMES)}")
    rt: Runtime = runtime  # type: ignore[assignment]
    missing: list[str] = []
    if rt == "ort-cpu":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            missing.append("onnxruntime is not installed (pip install onnxruntime)")
    if rt == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except (ImportError, OSError):
            missing.append("tensorrt is not installed (pip install 'famc[tensorrt]')")
    if rt in ("torch-cuda", "tensorrt") and not torch.cuda.is_available():
        missing.append(
            f"no CUDA GPU (torch.cuda.is_available() is False with torch {torch.__version__})"
        )
    if missing:
        raise FamcError(
            f"runtime {rt} cannot run on this host: {'; '.join(missing)}; "
            "use --runtime ort-cpu or torch-cpu, or profile on a host that has them"
        )
    return rt


def runtime_version(runtime: Runtime) -> str:
    if runtime == "ort-cpu":
        import onnxruntime

        return str(onnxruntime.__version__)
    if runtime == "tensorrt":
        import tensorrt

        return str(tensorrt.__version__)
    if runtime == "torch-cuda":
        return f"{torch.__version__} (CUDA {torch.version.cuda})"
    return str(torch.__version__)


def device_info(runtime: Runtime) -> Device:
    """This host as a table records it: CPU model, OS platform, cores and (for GPU runtimes) GPU."""
    cpu = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    gpu = torch.cuda.get_device_name() if runtime in ("torch-cuda", "tensorrt") else None
    return Device(cpu=cpu, platform=platform.platform(), cores=os.cpu_count() or 1, gpu=gpu)


@contextmanager
def measuring(runtime: Runtime, threads: int, seed: int) -> Iterator[None]:
    """Fix PyTorch's threads and seed while measuring, and restore both for the caller.

    Torch runtimes get the thread count under test; otherwise PyTorch (only building graphs)
    gets one thread so it never competes with the runtime being timed. The seed makes the
    random weights of the timed graphs reproducible without disturbing the caller's RNG.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(threads if runtime in ("torch-cpu", "torch-cuda") else 1)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(before)


def make_timer(runtime: Runtime, module: nn.Module, shape: tuple[int, ...], threads: int) -> Timer:
    """A ``Timer`` for ``module`` on ``runtime`` with a fixed random input of ``shape``."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    module = module.eval()
    if runtime == "ort-cpu":
        return _OrtTimer(_onnx_bytes(module, x), x, threads)
    if runtime == "tensorrt":
        return _TensorRTTimer(_onnx_bytes(module, x), x)
    if runtime == "torch-cuda":
        module, x = module.cuda(), x.cuda()
    if x.dim() == 4:
        module = module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        x = x.contiguous(memory_format=torch.channels_last)
    sync = torch.cuda.synchronize if runtime == "torch-cuda" else _noop

    def run(k: int) -> float:
        with torch.inference_mode():
            sync()
            start = time.perf_counter()
            for _ in range(k):
                module(x)
            sync()
            return (time.perf_counter() - start) / k

    return run


def _noop() -> None:
    return None


def _onnx_bytes(module: nn.Module, x: torch.Tensor) -> bytes:
    """Exported as ``famc export`` does (TorchScript exporter, opset 17, dynamic batch axis)."""
    buf = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notices
        torch.onnx.export(
            module,
            (x,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=["input"],
            output_names=["output"],
            dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
            opset_version=17,
            do_constant_folding=True,
            dynamo=False,  # the dynamo exporter is ~25x slower and yields the same graph here
        )
    return buf.getvalue()


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
        self.binding.bind_ortvalue_input("input", self.value)
        self.binding.bind_output("output")

    def __call__(self, k: int) -> float:
        run, binding = self.sess.run_with_iobinding, self.binding
        start = time.perf_counter()
        for _ in range(k):
            run(binding)
        return (time.perf_counter() - start) / k


class _TensorRTTimer:
    """A static-shape fp32 engine with its I/O buffers bound once, timed on its own stream."""

    def __init__(self, model: bytes, x: torch.Tensor) -> None:
        import tensorrt as trt

        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(0)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse(model):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise FamcError(f"TensorRT cannot parse a profiling graph: {errors}")
        config = builder.create_builder_config()
        tf32 = getattr(trt.BuilderFlag, "TF32", None)
        if tf32 is not None:
            config.clear_flag(tf32)  # fp32 tables time true fp32, as famc's engines run
        profile = builder.create_optimization_profile()
        profile.set_shape("input", tuple(x.shape), tuple(x.shape), tuple(x.shape))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise FamcError("TensorRT engine build failed for a profiling graph (see the log)")
        self.engine = trt.Runtime(logger).deserialize_cuda_engine(serialized)
        self.context = self.engine.create_execution_context()
        self.context.set_input_shape("input", tuple(x.shape))
        self.inp = x.cuda().contiguous()
        shape = tuple(self.context.get_tensor_shape("output"))
        self.out = torch.empty(shape, device="cuda")
        self.context.set_tensor_address("input", self.inp.data_ptr())
        self.context.set_tensor_address("output", self.out.data_ptr())
        self.stream = torch.cuda.Stream()

    def __call__(self, k: int) -> float:
        self.stream.synchronize()
        start = time.perf_counter()
        for _ in range(k):
            self.context.execute_async_v3(self.stream.cuda_stream)
        self.stream.synchronize()
        return (time.perf_counter() - start) / k
