"""TensorRT engine build from the exported ONNX, or a ready ``trtexec.sh`` when it cannot run here.

Engines are specific to the GPU and TensorRT version they were built with, so building on a host
without either is impossible; instead we *defer* with the exact command for the deployment host.
Written against TensorRT 10/11: explicit-batch networks (``create_network(0)``), no precision
builder flags (11 removed them; precision comes from the ONNX graph), name-based I/O with
``set_tensor_address`` + ``execute_async_v3``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from famc import io as _fs
from famc.data.preprocessing import Preprocessing
from famc.errors import FamcError
from famc.export.onnx import INPUT_NAME, OUTPUT_NAME

SCRIPT_NAME = "trtexec.sh"


def tensorrt_unavailable_reason() -> str | None:
    """Why an engine cannot be built on this host, or ``None`` if it can."""
    missing = []
    try:
        import tensorrt  # noqa: F401
    except (ImportError, OSError):
        missing.append("tensorrt is not installed (pip install 'famc[tensorrt]')")
    if not torch.cuda.is_available():
        missing.append("no CUDA device (torch.cuda.is_available() is False)")
    return "; ".join(missing) or None


def trtexec_command(
    onnx_path: Path,
    engine_path: Path,
    pre: Preprocessing,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    cwd: Path | None = None,
) -> str:
    """The equivalent ``trtexec`` build line; paths are relative to ``cwd`` when given."""

    def rel(p: Path) -> str:
        return shlex.quote(os.path.relpath(p, cwd) if cwd is not None else str(p))

    def shape(b: int) -> str:
        return f"{INPUT_NAME}:" + "x".join(map(str, pre.input_shape(b)))

    # --noTF32: TF32 convolutions drift ~1e-3 from fp32 and would fail the 1e-4 parity gate.
    return (
        f"trtexec --onnx={rel(onnx_path)} --saveEngine={rel(engine_path)} "
        f"--minShapes={shape(min_batch)} --optShapes={shape(opt_batch)} "
        f"--maxShapes={shape(max_batch)} --noTF32"
    )


def write_trtexec_script(
    onnx_path: Path, engine_path: Path, pre: Preprocessing, batches: tuple[int, int, int]
) -> Path:
    """``trtexec.sh`` beside the ONNX file: the engine build for the deployment GPU host."""
    cmd = trtexec_command(onnx_path, engine_path, pre, *batches, cwd=onnx_path.parent)
    return _fs.write_text(
        onnx_path.parent / SCRIPT_NAME,
        "#!/usr/bin/env sh\n"
        "# Build the TensorRT engine on the deployment GPU host (engines are GPU/TRT specific).\n"
        'set -eu\ncd "$(dirname "$0")"\n' + cmd + "\n",
        mode=0o755,
    )


def export_tensorrt(
    onnx_path: Path, engine_path: Path, pre: Preprocessing, batches: tuple[int, int, int]
) -> Path:
    """Build ``engine_path`` from ``onnx_path`` on this GPU (and write ``trtexec.sh`` beside it)."""
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FamcError(f"{onnx_path}: no such ONNX file; export ONNX first")
    min_b, opt_b, max_b = batches
    if not 1 <= min_b <= opt_b <= max_b:
        raise FamcError(f"need 1 <= min_batch <= opt_batch <= max_batch, got {batches}")
    write_trtexec_script(onnx_path, engine_path, pre, batches)
    shapes = (pre.input_shape(min_b), pre.input_shape(opt_b), pre.input_shape(max_b))
    _fs.write_bytes(engine_path, serialized_engine(onnx_path.read_bytes(), shapes))
    return engine_path


def engine_versions() -> str:
    """TensorRT/CUDA/GPU of this host: an engine only runs where these match."""
    import tensorrt as trt

    major, minor = torch.cuda.get_device_capability()
    return (
        f"tensorrt {trt.__version__}, cuda {torch.version.cuda}, gpu "
        f"{torch.cuda.get_device_name()}, compute capability {major}.{minor}"
    )


def serialized_engine(onnx_bytes: bytes, shapes: tuple[tuple[int, ...], ...]) -> bytes:
    """The one TensorRT builder: an fp32 engine (TF32 off) for the ONNX graph, with an
    optimisation profile of ``(min, opt, max)`` input shapes."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FamcError(f"TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:
        config.clear_flag(tf32)  # keep true fp32 so the 1e-4 parity gate is meaningful
    profile = builder.create_optimization_profile()
    profile.set_shape(INPUT_NAME, *shapes)
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FamcError("TensorRT engine build failed (see the TensorRT log)")
    return bytes(serialized)


def build_engine(onnx_bytes: bytes, *shapes: tuple[int, ...]) -> Any:
    """A deserialized engine (``serialized_engine`` loaded on this GPU), e.g. to time it."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    return runtime.deserialize_cuda_engine(serialized_engine(onnx_bytes, shapes))


def run_tensorrt(engine_path: Path, batches: Iterable[Tensor] | Tensor) -> Tensor:
    """Logits from a serialized engine, using torch CUDA tensors as I/O buffers."""
    import tensorrt as trt

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
    if engine is None:
        raise FamcError(
            f"{engine_path}: cannot load engine (built for another GPU or TensorRT version?)"
        )
    if engine.get_tensor_dtype(OUTPUT_NAME) != trt.float32:
        raise FamcError(f"{engine_path}: expected float32 '{OUTPUT_NAME}'")
    context = engine.create_execution_context()
    max_batch = int(engine.get_tensor_profile_shape(INPUT_NAME, 0)[2][0])
    if isinstance(batches, Tensor):
        batches = [batches]
    stream = torch.cuda.Stream()
    outs = []
    with torch.cuda.stream(stream):  # copies, allocations and the engine share one stream
        for x in batches:
            for chunk in x.split(max_batch):
                inp = chunk.to("cuda", torch.float32).contiguous()
                context.set_input_shape(INPUT_NAME, tuple(inp.shape))
                out = torch.empty(
                    tuple(context.get_tensor_shape(OUTPUT_NAME)),
                    device="cuda",
                    dtype=torch.float32,
                )
                context.set_tensor_address(INPUT_NAME, inp.data_ptr())
                context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
                if not context.execute_async_v3(stream.cuda_stream):
                    raise FamcError(f"{engine_path}: TensorRT execution failed")
                stream.synchronize()
                outs.append(out.cpu())
    if not outs:
        raise FamcError("no input batches given")
    return torch.cat(outs)
