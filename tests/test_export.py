"""famc.export: every format is exported, re-loaded and compared tensor-by-tensor with PyTorch."""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper
from pydantic import ValidationError
from safetensors.torch import load_file
from torch import nn

import famc.export.onnx as onnx_mod
from famc.errors import FamcError
from famc.export import (
    Preprocessing,
    export_member,
    export_onnx,
    parity,
    read_onnx_preprocessing,
    run_onnx,
    torch_logits,
)
from famc.export.coreml import export_coreml
from famc.export.tensorrt import (
    export_tensorrt,
    tensorrt_unavailable_reason,
    trtexec_command,
    write_trtexec_script,
)
from famc.export.verify import verify_member
from famc.verify import verify

HAS_COREML = importlib.util.find_spec("coremltools") is not None
CAN_BUILD_TRT = tensorrt_unavailable_reason() is None
CLASSES = tuple(f"digit_{i}" for i in range(10))


class TinyNet(nn.Module):
    """conv-bn-hardswish, depthwise conv, SE-like gating mul, global avg pool, linear."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16))
        self.act = nn.Hardswish()
        self.dw = nn.Sequential(
            nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False), nn.BatchNorm2d(16), nn.Hardswish()
        )
        self.se = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(16, 4, 1),
            nn.ReLU(),
            nn.Conv2d(4, 16, 1),
            nn.Hardsigmoid(),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, len(CLASSES))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.stem(x))
        x = self.dw(x)
        x = x * self.se(x)
        return self.fc(torch.flatten(self.pool(x), 1))


def make_model() -> TinyNet:
    torch.manual_seed(0)
    model = TinyNet()
    with torch.no_grad():  # non-trivial BN statistics so folding is actually exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def make_batches(n: int = 256, batch: int = 64, seed: int = 1) -> list[tuple[torch.Tensor, ...]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, len(CLASSES), (n,), generator=g)
    return list(zip(x.split(batch), y.split(batch), strict=True))


PRE = Preprocessing(resolution=28, channels=1, mean=(0.1307,), std=(0.3081,), class_names=CLASSES)


@pytest.fixture(scope="module")
def model() -> TinyNet:
    return make_model()


@pytest.fixture(scope="module")
def onnx_file(tmp_path_factory: pytest.TempPathFactory, model: TinyNet) -> Path:
    return export_onnx(model, tmp_path_factory.mktemp("onnx") / "model.onnx", PRE)


@pytest.fixture(scope="module")
def member_dir(tmp_path_factory: pytest.TempPathFactory, model: TinyNet) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("member")
    formats = ["onnx", "tensorrt"] + (["coreml"] if HAS_COREML else [])
    return out, export_member(model, out, PRE, formats, make_batches(64, 32))


# --- ONNX -------------------------------------------------------------------------------------


def test_onnx_is_self_contained_with_dynamic_batch(onnx_file: Path, model: TinyNet) -> None:
    assert sorted(p.name for p in onnx_file.parent.iterdir()) == ["model.onnx"]  # no side data
    proto = onnx.load(str(onnx_file), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert [i.name for i in proto.graph.input] == ["input"]
    assert [o.name for o in proto.graph.output] == ["logits"]
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    onnx.checker.check_model(proto, full_check=True)
    for batch in (1, 7):
        x = torch.randn(batch, 1, 28, 28)
        out = run_onnx(onnx_file, x)
        assert out.shape == (batch, 10)
        with torch.no_grad():
            torch.testing.assert_close(out, model(x), atol=1e-4, rtol=0)


def test_onnx_metadata_round_trips(onnx_file: Path) -> None:
    assert read_onnx_preprocessing(onnx_file) == PRE
    props = {p.key: p.value for p in onnx.load(str(onnx_file)).metadata_props}
    assert json.loads(props["famc.class_names"]) == list(CLASSES)
    assert props["famc.resolution"] == "28" and props["famc.layout"] == "NCHW"


def test_onnx_parity_on_256_inputs(model: TinyNet, onnx_file: Path) -> None:
    batches = make_batches(256)
    xs = [x for x, _ in batches]
    labels = torch.cat([y for _, y in batches])
    p = parity(torch_logits(model, xs), run_onnx(onnx_file, xs), labels)
    assert p.n == 256
    assert p.top1_agreement == 1.0
    assert p.max_abs < 1e-4 and p.min_atol == p.max_abs
    assert p.negative_flips == 0 and p.positive_flips == 0
    assert p.top1_reference == p.top1_artifact
    assert p.passed()


def test_export_onnx_leaves_training_mode_and_rejects_class_mismatch(tmp_path: Path) -> None:
    model = make_model().train()
    export_onnx(model, tmp_path / "a.onnx", PRE)
    assert model.training
    bad = PRE.model_copy(update={"class_names": ("a", "b")})
    with pytest.raises(FamcError, match="class_names"):
        export_onnx(model, tmp_path / "b.onnx", bad)
    assert not (tmp_path / "b.onnx").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx"]  # no temp leftovers


def test_preprocessing_validates() -> None:
    with pytest.raises(ValidationError, match="one value per channel"):
        Preprocessing(resolution=28, channels=3, mean=(0.5,), std=(0.5,), class_names=("a",))
    with pytest.raises(FamcError, match="invalid 'famc.preprocessing'"):
        Preprocessing.from_json('{"resolution": 28}')


# --- parity numbers ---------------------------------------------------------------------------


def test_parity_matches_hand_computed_values() -> None:
    ref = torch.tensor([[2.0, 1.0, 0.0], [0.0, 3.0, 1.0], [1.0, 0.0, 0.5], [0.0, 0.2, 2.0]])
    art = ref.clone()
    art[0, 1] = 2.5  # sample 0: argmax 0 -> 1, reference right (label 0) -> negative flip
    art[2, 2] = 1.5  # sample 2: argmax 0 -> 2, reference wrong (label 2) -> positive flip
    art[3, 0] = 0.1  # sample 3: small error, argmax unchanged
    labels = torch.tensor([0, 1, 2, 2])
    p = parity(ref, art, labels)
    diffs = np.array([0, 1.5, 0] + [0] * 3 + [0, 0, 1.0] + [0.1, 0, 0])
    rels = diffs / np.maximum(np.abs(ref.numpy().ravel()), 1e-6)
    assert p.n == 4
    assert p.top1_reference == 0.75 and p.top1_artifact == 0.75
    assert p.top1_agreement == 0.5
    assert p.negative_flips == 1 and p.positive_flips == 1
    assert p.max_abs == pytest.approx(1.5) and p.min_atol == pytest.approx(1.5)
    assert p.mean_abs == pytest.approx(2.6 / 12)
    assert p.p99_abs == pytest.approx(np.percentile(diffs, 99))
    assert p.p99_abs == pytest.approx(1.0 + 0.89 * 0.5)  # linear interpolation, by hand
    # |0.1 - 0| / max(|0|, 1e-6) = 1e5: the floor bounds but does not hide near-zero blow-ups.
    assert p.max_rel == pytest.approx(1e5) and p.mean_rel == pytest.approx(rels.mean())
    assert not p.passed()
    assert parity(ref, ref + 5e-5, labels).passed(atol=1e-4)
    assert not parity(ref, ref + 2e-4, labels).passed(atol=1e-4)
    assert set(p.to_dict()) >= {"max_abs", "p99_rel", "negative_flips", "min_atol"}


def test_parity_nan_and_shape_errors() -> None:
    ref = torch.eye(3)
    art = ref.clone()
    art[1, 1] = float("nan")
    p = parity(ref, art, None)
    assert p.top1_agreement == pytest.approx(2 / 3) and not p.passed()
    assert p.top1_reference is None and p.negative_flips is None
    with pytest.raises(FamcError, match="shape"):
        parity(ref, torch.zeros(3, 4), None)


# --- corrupted artifacts ----------------------------------------------------------------------


def _perturb_onnx_weights(path: Path, scale: float = 1.05) -> None:
    proto = onnx.load(str(path))
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype == np.float32 and arr.ndim == 2:  # the classifier's Gemm weight
            init.CopyFrom(numpy_helper.from_array(arr * scale, init.name))
    onnx.save(proto, str(path))


def test_export_member_flags_corrupted_onnx(
    tmp_path: Path, model: TinyNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def corrupting_export(*args, **kwargs) -> Path:  # noqa: ANN002, ANN003
        path = export_onnx(*args, **kwargs)
        _perturb_onnx_weights(path)
        return path

    monkeypatch.setattr(onnx_mod, "export_onnx", corrupting_export)
    rec = export_member(model, tmp_path, PRE, ["onnx"], make_batches(64, 32))["onnx"]
    assert rec.status == "failed" and rec.min_atol == pytest.approx(rec.parity.max_abs)
    assert rec.parity is not None and rec.parity.max_abs > 1e-4
    assert "max|Δ| 0.00" in rec.detail and "allowed: max|Δ| ≤ 0.0001" in rec.detail


def test_export_failure_is_recorded_not_raised(
    tmp_path: Path, model: TinyNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs) -> Path:  # noqa: ANN002, ANN003
        raise RuntimeError("unsupported op 'Foo'\nlong traceback text")

    monkeypatch.setattr(onnx_mod, "export_onnx", boom)
    recs = export_member(model, tmp_path, PRE, ["tensorrt"], make_batches(32, 32))
    assert recs["onnx"].status == "failed"
    assert recs["onnx"].detail == "RuntimeError: unsupported op 'Foo'"
    assert recs["tensorrt"].status == "failed" and "onnx" in recs["tensorrt"].detail
    with pytest.raises(FamcError, match="unknown export format"):
        export_member(model, tmp_path, PRE, ["tflite"], make_batches(32, 32))


# --- member export + verify -------------------------------------------------------------------


def test_export_member_records_and_golden(member_dir: tuple[Path, dict]) -> None:
    out, recs = member_dir
    onnx_rec = recs["onnx"]
    assert onnx_rec.status == "passed" and onnx_rec.parity.n == 64
    assert onnx_rec.parity.max_abs < 1e-4 and onnx_rec.seconds > 0
    from famc.io import sha256_path

    assert onnx_rec.sha256 == sha256_path(out / "model.onnx")
    golden = load_file(str(out / "golden.safetensors"))
    assert golden["input"].shape == (16, 1, 28, 28) and golden["logits"].shape == (16, 10)
    assert golden["labels"].shape == (16,)
    manifest = json.loads((out / "artifacts.json").read_text())
    assert manifest["artifacts"]["onnx"]["path"] == "model.onnx"
    assert manifest["artifacts"]["onnx"]["policy"]["fail"]["atol"] == 1e-4
    if HAS_COREML:
        expected = "passed" if platform.system() == "Darwin" else "unavailable"
        assert recs["coreml"].status == expected, recs["coreml"].detail
        assert recs["coreml"].sha256 is not None


def test_verify_reruns_onnx_against_golden(member_dir: tuple[Path, dict]) -> None:
    out, _ = member_dir
    results = {r.subject: r for _, r in verify(out)}
    assert results["files"].status == "passed"
    assert results["model.onnx"].status == "passed"
    assert results["model.onnx"].parity.n == 16 and results["model.onnx"].parity.max_abs < 1e-4
    if HAS_COREML and platform.system() != "Darwin":
        assert results["model.mlpackage"].status == "unavailable"
        assert "macOS" in results["model.mlpackage"].detail
    if not CAN_BUILD_TRT:
        assert results["model.engine"].status == "unavailable"  # no engine until built on a GPU


def test_verify_catches_tampered_onnx(tmp_path: Path, model: TinyNet) -> None:
    recs = export_member(model, tmp_path, PRE, ["onnx"], make_batches(32, 32))
    _perturb_onnx_weights(tmp_path / "model.onnx")
    (finding,) = verify(tmp_path)  # a changed file is not re-run: its record no longer vouches
    assert finding[1].status == "failed" and "model.onnx differs" in finding[1].detail
    # the golden check alone (records trusted) still catches the numbers
    (rerun,) = verify_member(tmp_path, [], [recs["onnx"]])[1:]
    assert rerun.status == "failed" and rerun.parity is not None
    (tmp_path / "model.onnx").write_bytes(b"not an onnx file")
    (rerun,) = verify_member(tmp_path, [], [recs["onnx"]])[1:]
    assert rerun.status == "failed" and rerun.parity is None
    (tmp_path / "golden.safetensors").unlink()
    with pytest.raises(FamcError, match="golden"):
        verify_member(tmp_path, [], [recs["onnx"]])


# --- TensorRT ---------------------------------------------------------------------------------


@pytest.mark.skipif(CAN_BUILD_TRT, reason="this host has TensorRT + CUDA: the engine is built")
def test_tensorrt_unavailable_writes_trtexec_script(member_dir) -> None:
    out, recs = member_dir
    rec = recs["tensorrt"]
    assert rec.status == "unavailable" and rec.path == "model.engine" and rec.sha256 is None
    assert "CUDA GPU" in rec.detail and "sh trtexec.sh && famc verify ." in rec.detail
    script = out / "trtexec.sh"
    assert os.access(script, os.X_OK)
    assert (
        "trtexec --onnx=model.onnx --saveEngine=model.engine "
        "--minShapes=input:1x1x28x28 --optShapes=input:8x1x28x28 --maxShapes=input:64x1x28x28"
    ) in script.read_text()
    assert not (out / "model.engine").exists()


def test_tensorrt_reason_names_missing_cuda(
    onnx_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorrt", type(sys)("tensorrt"))  # importable stub
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert tensorrt_unavailable_reason() == "no CUDA device (torch.cuda.is_available() is False)"
    engine = onnx_file.with_suffix(".engine")
    cmd = trtexec_command(onnx_file, engine, PRE, 2, 16, 32)
    assert "--minShapes=input:2x1x28x28" in cmd and "--maxShapes=input:32x1x28x28" in cmd
    assert (
        write_trtexec_script(onnx_file, engine, PRE, (2, 16, 32))
        .read_text()
        .endswith(
            cmd.replace(str(onnx_file), "model.onnx").replace(str(engine), "model.engine") + "\n"
        )
    )
    with pytest.raises(FamcError, match="min_batch"):
        export_tensorrt(onnx_file, engine, PRE, (8, 4, 64))


# --- CoreML -----------------------------------------------------------------------------------


@pytest.mark.skipif(not HAS_COREML, reason="coremltools not installed (pip install 'famc[coreml]')")
def test_coreml_export_structure(tmp_path: Path, model: TinyNet) -> None:
    import coremltools as ct

    from famc.export.coreml import check_coreml, read_coreml_preprocessing

    path = export_coreml(model, tmp_path / "model.mlpackage", PRE)
    assert path.is_dir() and (path / "Manifest.json").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["model.mlpackage"]  # temp dir was renamed
    summary = check_coreml(path, PRE)
    assert summary == {"input": {"input": [None, 1, 28, 28]}, "output": {"logits": [None, 10]}}
    assert read_coreml_preprocessing(path) == PRE
    spec = ct.utils.load_spec(str(path))
    ranges = spec.description.input[0].type.multiArrayType.shapeRange.sizeRanges
    assert (ranges[0].lowerBound, ranges[0].upperBound) == (1, 64)
    with pytest.raises(FamcError, match="mlpackage"):
        export_coreml(model, tmp_path / "model.mlmodel", PRE)


def test_coreml_missing_dependency_is_one_line_fix(
    tmp_path: Path, model: TinyNet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "coremltools", None)  # makes `import coremltools` fail
    with pytest.raises(FamcError, match=r"pip install 'famc\[coreml\]'") as err:
        export_coreml(model, tmp_path / "model.mlpackage", PRE)
    assert "\n" not in str(err.value)
    rec = export_member(model, tmp_path, PRE, ["coreml"], make_batches(32, 32))["coreml"]
    assert rec.status == "failed" and "famc[coreml]" in rec.detail


class _Streamed:
    """Re-iterable test batches made afresh on every pass, counting the passes."""

    def __init__(self, n: int, batch: int) -> None:
        self.batches, self.passes = make_batches(n, batch), 0

    def __iter__(self):  # noqa: ANN204
        self.passes += 1  # a generator: counted when a pass starts, not when iter() is called
        for x, y in self.batches:
            yield x.clone(), y


def test_export_streams_the_test_split_once_per_pass(tmp_path: Path, model: TinyNet) -> None:
    """An ImageNet-sized test split must never sit in memory: the reference and each format
    stream it again (one pass each), with the same parity as a list; an iterator is refused."""
    streamed = _Streamed(256, 32)
    rec = export_member(model, tmp_path / "s", PRE, ["onnx"], streamed)["onnx"]
    listed = export_member(model, tmp_path / "l", PRE, ["onnx"], make_batches(256, 32))["onnx"]
    assert streamed.passes == 2  # PyTorch's reference, then ONNX
    assert rec.status == listed.status == "passed" and rec.parity.n == listed.parity.n == 256
    assert rec.parity.max_abs == listed.parity.max_abs
    assert rec.parity.top1_agreement == listed.parity.top1_agreement == 1.0
    golden = load_file(str(tmp_path / "s" / "golden.safetensors"))
    assert torch.equal(golden["input"], torch.cat([x for x, _ in make_batches(256, 32)])[:16])
    with pytest.raises(TypeError, match="not an iterator"):
        export_member(model, tmp_path / "i", PRE, ["onnx"], iter(make_batches(64, 32)))
