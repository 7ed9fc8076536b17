"""ONNX export: one self-contained file with a dynamic batch axis and the preprocessing contract.

ONNX is the portable baseline (ONNX Runtime runs it on every host), so it is also what TensorRT
builds from and what ``famc verify`` can always re-check.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterable
from pathlib import Path

import onnx
import torch
from torch import Tensor, nn

from famc import io as _fs
from famc.data.preprocessing import METADATA_KEY, Preprocessing
from famc.errors import FamcError

INPUT_NAME = "input"
OUTPUT_NAME = "logits"
_PROTOBUF_LIMIT = 2**31 - 1  # a single .onnx file cannot exceed protobuf's 2 GiB


def onnx_model(model: nn.Module, example: Tensor, opset: int = 17) -> onnx.ModelProto:
    """The one ONNX export every caller uses (member artifacts and latency-timing graphs alike):
    TorchScript exporter, ``input``/``logits`` names, a dynamic batch axis, constant folding."""
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # legacy-exporter deprecation notices, by choice
        torch.onnx.export(
            model,
            (example,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,  # TorchScript exporter: 0.8 s vs ~20 s, same graph for static CNNs
        )
    return onnx.load_from_string(buf.getvalue())


def export_onnx(model: nn.Module, path: Path, pre: Preprocessing, opset: int = 17) -> Path:
    """Export ``model`` to ``path`` and fully check it; the model's train/eval mode is restored."""
    path = Path(path)
    param = next(iter(model.parameters()), None)
    if param is not None and param.dtype != torch.float32:
        raise FamcError(
            f"ONNX export expects a float32 model, got {param.dtype}; call model.float()"
        )
    device = param.device if param is not None else torch.device("cpu")
    # Batch 2, not 1: tracing with batch 1 can bake size-1 broadcasts/reshapes into the graph.
    dummy = torch.zeros(pre.input_shape(2), device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(dummy)
        if tuple(out.shape) != (2, pre.num_classes):
            raise FamcError(
                f"model outputs shape {tuple(out.shape[1:])} per sample but preprocessing lists "
                f"{pre.num_classes} class_names; they must match"
            )
        proto = onnx_model(model, dummy, opset)
        _finalize(proto, pre)
        data = proto.SerializeToString()
        if len(data) > _PROTOBUF_LIMIT:
            raise FamcError(f"{path}: model is {len(data) / 2**30:.1f} GiB, over ONNX's 2 GiB")
        with _fs.atomic_path(path) as tmp:
            tmp.write_bytes(data)
            _check(tmp)
    finally:
        model.train(was_training)
    return path


def _finalize(proto: onnx.ModelProto, pre: Preprocessing) -> None:
    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            raise FamcError("ONNX export produced external data; model too large for one file")
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, pre.metadata())
    proto.producer_name = "famc"
    proto.doc_string = f"famc classifier; preprocessing contract in metadata '{METADATA_KEY}'"


def _check(path: Path) -> None:
    proto = onnx.load(str(path), load_external_data=False)
    onnx.checker.check_model(proto, full_check=True)
    inputs = [i.name for i in proto.graph.input]
    outputs = [o.name for o in proto.graph.output]
    if inputs != [INPUT_NAME] or outputs != [OUTPUT_NAME]:
        raise FamcError(
            f"ONNX graph has inputs {inputs} / outputs {outputs}; expected input/logits"
        )
    batch = proto.graph.input[0].type.tensor_type.shape.dim[0]
    if not batch.dim_param:
        raise FamcError("ONNX export lost the dynamic batch axis")


def read_onnx_preprocessing(path: Path) -> Preprocessing:
    """Recover the preprocessing contract from an exported file (weights are not loaded)."""
    path = Path(path)
    if not path.is_file():
        raise FamcError(f"{path}: no such ONNX file")
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    if METADATA_KEY not in props:
        raise FamcError(f"{path}: no '{METADATA_KEY}' metadata; was it exported by famc?")
    return Preprocessing.from_json(props[METADATA_KEY], source=str(path))


def onnx_io(path: Path) -> dict[str, dict[str, list[int | None]]]:
    """Input/output names and shapes (``None`` for a symbolic axis), as ``check_coreml`` reports
    them, so two artifacts of one member can be compared."""
    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(v: onnx.ValueInfoProto) -> list[int | None]:
        return [d.dim_value if d.HasField("dim_value") else None
                for d in v.type.tensor_type.shape.dim]  # fmt: skip

    return {"input": {v.name: dims(v) for v in graph.input},
            "output": {v.name: dims(v) for v in graph.output}}  # fmt: skip


def run_onnx(path: Path, batches: Iterable[Tensor] | Tensor) -> Tensor:
    """Logits from ONNX Runtime (CPU provider) for each batch, concatenated, as fp32 CPU tensor."""
    import onnxruntime as ort  # local: import costs ~0.3 s and only this path needs it

    if isinstance(batches, Tensor):
        batches = [batches]
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    outs = []
    for x in batches:
        feed = {INPUT_NAME: x.detach().cpu().to(torch.float32).contiguous().numpy()}
        outs.append(torch.from_numpy(sess.run([OUTPUT_NAME], feed)[0]))
    if not outs:
        raise FamcError("no input batches given")
    return torch.cat(outs)
