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
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict
from torch import Tensor

from famc import io as _fs
from famc.errors import FamcError
from famc.export.meta import Preprocessing
from famc.export.onnx import INPUT_NAME, OUTPUT_NAME, run_onnx
from famc.export.parity import Parity, parity

SCRIPT_NAME = "trtexec.sh"


class TensorRTResult(BaseModel):
    """Outcome of :func:`export_tensorrt`; ``trtexec.sh`` is written in both cases for rebuilds."""

    model_config = ConfigDict(frozen=True)

    status: Literal["built", "deferred"]
    engine_path: Path | None
    script_path: Path
    command: str
    reason: str
    versions: dict[str, str] = {}
    parity: Parity | None = None


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


def export_tensorrt(
    onnx_path: Path,
    engine_path: Path,
    pre: Preprocessing,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 64,
    *,
    inputs: Tensor | None = None,
    reference_logits: Tensor | None = None,
    labels: Tensor | None = None,
) -> TensorRTResult:
    """Build ``engine_path`` from ``onnx_path`` if TensorRT and CUDA are present, else defer.

    With ``inputs``, a built engine is run and compared against ``reference_logits`` (PyTorch),
    falling back to ONNX Runtime on the same ONNX file when no reference is given.
    """
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FamcError(f"{onnx_path}: no such ONNX file; export ONNX first")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise FamcError(
            "need 1 <= min_batch <= opt_batch <= max_batch, "
            f"got {min_batch}/{opt_batch}/{max_batch}"
        )
    script = onnx_path.parent / SCRIPT_NAME
    cmd = trtexec_command(
        onnx_path, engine_path, pre, min_batch, opt_batch, max_batch, cwd=onnx_path.parent
    )
    _fs.write_text(
        script,
        "#!/usr/bin/env sh\n"
        "# Build the TensorRT engine on the deployment GPU host (engines are GPU/TRT specific).\n"
        'set -eu\ncd "$(dirname "$0")"\n' + cmd + "\n",
        mode=0o755,
    )
    reason = tensorrt_unavailable_reason()
    if reason is not None:
        return TensorRTResult(
            status="deferred", engine_path=None, script_path=script, command=cmd, reason=reason
        )
    versions = _build_engine(onnx_path, engine_path, pre, min_batch, opt_batch, max_batch)
    result_parity = None
    if inputs is not None:
        batches = list(inputs.split(max_batch))
        ref = reference_logits if reference_logits is not None else run_onnx(onnx_path, batches)
        result_parity = parity(ref, run_tensorrt(engine_path, batches), labels)
    return TensorRTResult(
        status="built",
        engine_path=engine_path,
        script_path=script,
        command=cmd,
        reason="built on this host",
        versions=versions,
        parity=result_parity,
    )


def _build_engine(
    onnx_path: Path, engine_path: Path, pre: Preprocessing, min_b: int, opt_b: int, max_b: int
) -> dict[str, str]:
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10+
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise FamcError(f"{onnx_path}: TensorRT cannot parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    tf32 = getattr(trt.BuilderFlag, "TF32", None)
    if tf32 is not None:
        config.clear_flag(tf32)  # keep true fp32 so the 1e-4 parity gate is meaningful
    profile = builder.create_optimization_profile()
    profile.set_shape(
        INPUT_NAME, pre.input_shape(min_b), pre.input_shape(opt_b), pre.input_shape(max_b)
    )
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise FamcError(f"{onnx_path}: TensorRT engine build failed (see the TensorRT log)")
    _fs.write_bytes(engine_path, bytes(serialized))
    major, minor = torch.cuda.get_device_capability()
    return {
        "tensorrt": str(trt.__version__),
        "cuda": str(torch.version.cuda),
        "gpu": torch.cuda.get_device_name(),
        "compute_capability": f"{major}.{minor}",
    }


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
