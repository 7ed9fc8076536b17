"""CoreML export (``.mlpackage`` ML Program) with a structural check that works off macOS.

coremltools converts and saves on Linux but can only *predict* on macOS, so on other hosts we
verify what we can (I/O names, dtypes, shapes, metadata) and defer numeric parity to a Mac.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import platform
import warnings
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from famc import io as _fs
from famc.data.preprocessing import METADATA_KEY, Preprocessing
from famc.errors import FamcError
from famc.export.onnx import INPUT_NAME, OUTPUT_NAME

_INSTALL_HINT = "pip install 'famc[coreml]'"


def can_predict_coreml() -> bool:
    """CoreML inference needs Apple's runtime, available only on macOS."""
    return platform.system() == "Darwin"


def import_coremltools() -> ModuleType:
    """Import the optional dependency, turning its absence into a one-line fix."""
    logging.getLogger("coremltools").setLevel(logging.ERROR)  # untested-torch and proxy notices
    try:
        import coremltools
    except ImportError as e:
        raise FamcError(f"CoreML export needs coremltools: {_INSTALL_HINT}") from e
    return coremltools


def export_coreml(
    model: nn.Module,
    path: Path,
    pre: Preprocessing,
    precision: str = "fp32",
    max_batch: int = 64,
) -> Path:
    """Trace ``model`` and save an ML Program ``.mlpackage`` with batch 1..``max_batch``."""
    path = Path(path)
    if path.suffix != ".mlpackage":
        raise FamcError(f"{path}: CoreML ML Programs must be saved as a '.mlpackage' directory")
    if precision not in ("fp32", "fp16"):
        raise FamcError(f"CoreML precision must be 'fp32' or 'fp16', got {precision!r}")
    if max_batch < 1:
        raise FamcError(f"max_batch must be >= 1, got {max_batch}")
    ct = import_coremltools()
    was_training = model.training
    model.eval()
    try:
        # Trace on CPU without moving the caller's model off its device.
        cpu_model = copy.deepcopy(model).cpu() if _device(model).type != "cpu" else model
        example = torch.zeros(pre.input_shape(2))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # TracerWarnings; the structural check catches fallout
            traced = torch.jit.trace(cpu_model, example)
        shape = ct.Shape((ct.RangeDim(1, max_batch, 1), *pre.input_shape(1)[1:]))
        with contextlib.redirect_stderr(io.StringIO()):  # its per-pass progress bars
            mlmodel = ct.convert(
                traced,
                inputs=[ct.TensorType(name=INPUT_NAME, shape=shape, dtype=np.float32)],
                outputs=[ct.TensorType(name=OUTPUT_NAME)],
                convert_to="mlprogram",
                compute_precision=(
                    ct.precision.FLOAT32 if precision == "fp32" else ct.precision.FLOAT16
                ),
                minimum_deployment_target=ct.target.iOS15,
                skip_model_load=not can_predict_coreml(),  # loading fails noisily off macOS
            )
    finally:
        model.train(was_training)
    mlmodel.short_description = "famc classifier; preprocessing contract in metadata"
    meta = pre.metadata() | {"famc.precision": precision, "famc.max_batch": str(max_batch)}
    mlmodel.user_defined_metadata.update(meta)
    with _fs.atomic_path(path, suffix=".mlpackage") as tmp:
        mlmodel.save(str(tmp))
        check_coreml(tmp, pre)
    return path


def _device(model: nn.Module) -> torch.device:
    p = next(iter(model.parameters()), None)
    return p.device if p is not None else torch.device("cpu")


def check_coreml(path: Path, pre: Preprocessing) -> dict[str, Any]:
    """Reload the saved spec (no runtime needed) and assert I/O names, shapes and metadata.

    Returns a summary (``input``/``output`` name -> shape with ``None`` for the flexible batch).
    """
    ct = import_coremltools()
    spec = ct.utils.load_spec(str(path))
    if spec.WhichOneof("Type") != "mlProgram":
        raise FamcError(f"{path}: expected an ML Program, found {spec.WhichOneof('Type')}")
    ins = [i.name for i in spec.description.input]
    outs = [o.name for o in spec.description.output]
    if ins != [INPUT_NAME] or outs != [OUTPUT_NAME]:
        raise FamcError(f"{path}: inputs {ins} / outputs {outs}; expected input/logits")
    fn = spec.mlProgram.functions["main"]
    in_shape = _dims(fn.inputs[0].type)
    block = fn.block_specializations[fn.opset]
    out_type = next(
        (o.type for op in block.operations for o in op.outputs if o.name == OUTPUT_NAME), None
    )
    if out_type is None:
        raise FamcError(f"{path}: no op produces '{OUTPUT_NAME}'")
    out_shape = _dims(out_type)
    want_in = [None, *pre.input_shape(1)[1:]]
    if in_shape != want_in or out_shape != [None, pre.num_classes]:
        raise FamcError(
            f"{path}: shapes input {in_shape} / logits {out_shape}; "
            f"expected {want_in} / [None, {pre.num_classes}]"
        )
    stored = dict(spec.description.metadata.userDefined)
    if Preprocessing.from_json(stored.get(METADATA_KEY, "null"), source=str(path)) != pre:
        raise FamcError(f"{path}: stored preprocessing metadata differs from the exported one")
    return {"input": {INPUT_NAME: in_shape}, "output": {OUTPUT_NAME: out_shape}}


def check_coreml_against(path: Path, onnx_path: Path | None, pre: Preprocessing) -> None:
    """What can be checked of a CoreML package without Apple's runtime: its spec, I/O names and
    shapes and the preprocessing it carries, against the ONNX artifact of the same member (when
    there is one) and the member's preprocessing contract."""
    summary = check_coreml(path, pre)
    if onnx_path is None:
        return
    from famc.export.onnx import onnx_io, read_onnx_preprocessing

    if read_onnx_preprocessing(onnx_path) != pre:
        raise FamcError(f"{path}: preprocessing differs from the ONNX artifact {onnx_path.name}")
    if onnx_io(onnx_path) != summary:
        raise FamcError(
            f"{path}: I/O {summary} differs from the ONNX artifact's {onnx_io(onnx_path)}"
        )


def _dims(value_type: Any) -> list[int | None]:
    """MIL tensor dims; ``None`` marks a flexible (unknown) dimension."""
    dims = value_type.tensorType.dimensions
    return [d.constant.size if d.WhichOneof("dimension") == "constant" else None for d in dims]


def read_coreml_preprocessing(path: Path) -> Preprocessing:
    ct = import_coremltools()
    stored = dict(ct.utils.load_spec(str(path)).description.metadata.userDefined)
    if METADATA_KEY not in stored:
        raise FamcError(f"{path}: no '{METADATA_KEY}' metadata; was it exported by famc?")
    return Preprocessing.from_json(stored[METADATA_KEY], source=str(path))


def run_coreml(path: Path, batches: Iterable[Tensor] | Tensor) -> Tensor:
    """Logits from the CoreML runtime (macOS only), split to the package's max batch."""
    if not can_predict_coreml():
        raise FamcError(f"CoreML prediction needs macOS; this host is {platform.system()}")
    ct = import_coremltools()
    mlmodel = ct.models.MLModel(str(path))
    max_batch = int(mlmodel.user_defined_metadata.get("famc.max_batch", "1"))
    if isinstance(batches, Tensor):
        batches = [batches]
    outs = []
    for x in batches:
        for chunk in x.detach().cpu().float().split(max_batch):
            pred = mlmodel.predict({INPUT_NAME: chunk.contiguous().numpy()})
            outs.append(torch.from_numpy(np.asarray(pred[OUTPUT_NAME], dtype=np.float32)))
    if not outs:
        raise FamcError("no input batches given")
    return torch.cat(outs)
