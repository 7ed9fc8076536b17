"""``device: cpu | cuda | auto``: clear errors, CPU runs unchanged, GPU runs close to CPU ones and
their checkpoints portable. The GPU tests skip on hosts without CUDA."""

from __future__ import annotations

import importlib.util
import json
import platform
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from famc.cli import app
from famc.data import load_dataset
from famc.device import keep_freed_memory, to_device
from famc.errors import FamcError
from famc.space import get_space
from famc.supernet import build_supernet, load_checkpoint
from famc.train import load_train_config, train
from famc.train.standalone import StandaloneRecipe, train_standalone
from tests.test_train import _config, _weights

needs_cuda = pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA GPU on this host: the GPU path is untested here"
)
SHORT = {"epochs": 1, "max_steps_per_epoch": 3, "eval": {"num_random": 1, "batch_size": 64}}


@pytest.fixture
def no_cuda(monkeypatch):
    """A CPU-only host, whatever this one is."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def _log(run: Path) -> list[dict]:
    drop = {"images_per_s", "seconds"}  # wall-clock figures
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in lines]


def test_bad_device_value_names_the_field(tmp_path, tiny_folder):
    with pytest.raises(FamcError, match=r"field `device`: Input should be 'cpu', 'cuda' or 'auto'"):
        load_train_config(_config(tmp_path, tiny_folder, device="gpu"))
    result = CliRunner().invoke(app, ["train", str(_config(tmp_path, tiny_folder)), "--device",
                                      "gpu", "--no-progress"])  # fmt: skip
    assert result.exit_code == 2 and "--device: unknown device 'gpu'" in result.output


def test_cuda_without_cuda_is_exit_2_naming_file_field_and_fix(tmp_path, tiny_folder, no_cuda):
    cfg = _config(tmp_path, tiny_folder, device="cuda")
    result = CliRunner().invoke(app, ["train", str(cfg), "--max-steps", "1", "--no-progress"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    line = " ".join(result.output.split())  # the console may wrap
    assert f"error: {cfg}: invalid train config: field `device`: CUDA is not available" in line
    assert "set `device: cpu`, or `device: auto`" in line
    assert not (tmp_path / "run").exists()  # failed before touching the output
    # --device overrides the file both ways
    result = CliRunner().invoke(app, ["train", str(cfg), "--device", "cpu", "--max-steps", "1",
                                      "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["train", str(_config(tmp_path, tiny_folder)), "--device",
                                      "cuda", "--force", "--no-progress"])  # fmt: skip
    assert result.exit_code == 2 and "error: --device: CUDA is not available" in result.output


def test_auto_on_a_cpu_host_is_exactly_cpu(tmp_path, tiny_folder, no_cuda):
    runs = {}
    for device in ("cpu", "auto"):
        cfg = load_train_config(_config(tmp_path / device, tiny_folder, sampler="attentive",
                                        attentive={"prior_samples": 200}, device=device, **SHORT))  # fmt: skip
        runs[device] = (train(cfg, progress=False, max_steps=2), Path(cfg.out))
    (m_cpu, cpu), (m_auto, auto) = runs["cpu"], runs["auto"]
    assert _log(cpu) == _log(auto) and m_cpu == m_auto
    a, b = _weights(cpu), _weights(auto)
    assert all(torch.equal(a[k], b[k]) for k in a)
    opt = [torch.load(r / "train_state.pt", weights_only=True)["optimizer"] for r in (cpu, auto)]
    assert all(
        torch.equal(s["momentum_buffer"], opt[1]["state"][i]["momentum_buffer"])
        for i, s in opt[0]["state"].items()
    )


def test_to_device_leaves_cpu_tensors_alone():
    t = torch.arange(4)
    assert to_device(t, torch.device("cpu")) is t


def _bench():
    path = Path(__file__).resolve().parents[1] / "bench" / "standalone_truth.py"
    spec = importlib.util.spec_from_file_location("standalone_truth", path)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


def test_truth_resume_keeps_older_results_and_records_devices(tmp_path, tiny_folder):
    bench, space = _bench(), get_space("fashion-mbv3")
    data = load_dataset("folder", root=tiny_folder, image_size=28, channels=1, search_size=20,
                        calib_size=20)  # fmt: skip
    recipe = StandaloneRecipe(epochs=1, batch_size=32, lr=0.05, threads=1)
    archs = [space.smallest(), space.largest()]
    old = {"arch": archs[0].to_dict(), "top1": 12.5, "flops": 1}  # written before `device` existed
    out = tmp_path / "truth.json"
    out.write_text(json.dumps({"recipe": recipe.to_dict(), "torch": "2.13.0+cpu", "results": [old],
                               "wall_seconds": 5.0}))  # fmt: skip
    done = bench.load_previous(out, recipe, archs, resume=True)
    doc = {"results": [], "wall_seconds": 5.0}
    bench.run(space, archs, data, recipe, doc, done, out, "auto")
    results = json.loads(out.read_text())["results"]
    assert results[0] == {**old, "device": "cpu", "torch_version": "2.13.0+cpu"}
    expected = "cpu" if not torch.cuda.is_available() else "cuda"
    assert results[1]["device"].startswith(expected)
    assert results[1]["torch_version"] == torch.__version__


@needs_cuda
def test_cuda_run_checkpoints_load_and_resume_on_cpu(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, device="cuda", **SHORT))
    metrics = train(cfg, progress=False, max_steps=2)
    run = Path(cfg.out)
    assert metrics is not None and 0 <= metrics["largest"]["top1"] <= 100
    weights = _weights(run)
    assert all(t.device.type == "cpu" for t in weights.values())
    state = torch.load(run / "train_state.pt", map_location=None, weights_only=True)
    moments = [s["momentum_buffer"] for s in state["optimizer"]["state"].values()]
    assert moments and all(m.device.type == "cpu" for m in moments)
    load_checkpoint(build_supernet(get_space("fashion-mbv3")), run / "supernet.safetensors")
    on_cpu = cfg.model_copy(update={"device": "cpu"})
    train(on_cpu, resume=True, progress=False, max_steps=3)  # cuda → cpu
    on_gpu = cfg.model_copy(update={"device": "cuda"})
    train(on_gpu, resume=True, progress=False)  # and back
    assert [r["step"] for r in _log(run)] == [3]


@needs_cuda
def test_cuda_and_cpu_agree_after_one_step(tmp_path, tiny_folder):
    logs = {}
    for device in ("cpu", "cuda"):
        cfg = load_train_config(_config(tmp_path / device, tiny_folder, device=device, **SHORT))
        train(cfg, progress=False, max_steps=1)
        logs[device] = _log(Path(cfg.out))[0]
    for key in ("loss_largest", "loss_smallest", "loss_total"):  # TF32 convs: ~1e-3 apart
        assert logs["cuda"][key] == pytest.approx(logs["cpu"][key], abs=5e-3), key
    a, b = _weights(tmp_path / "cpu" / "run"), _weights(tmp_path / "cuda" / "run")
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-2


@needs_cuda
def test_standalone_on_cuda_is_close_to_cpu(tiny_folder):
    space = get_space("fashion-mbv3")
    data = load_dataset("folder", root=tiny_folder, image_size=28, channels=1, search_size=20,
                        calib_size=20)  # fmt: skip
    recipe = StandaloneRecipe(epochs=1, batch_size=8, lr=0.05, threads=1)
    cpu = train_standalone(space, space.smallest(), data, recipe)
    gpu = train_standalone(space, space.smallest(), data, recipe, device="cuda")
    assert cpu.device == "cpu" and gpu.device.startswith("cuda (")
    assert gpu.log[0]["loss"] == pytest.approx(cpu.log[0]["loss"], abs=0.05)
    assert gpu.n_test == cpu.n_test


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting exists in glibc only")
def test_cpu_evaluation_keeps_freed_memory_mapped():
    """glibc accepts both mallopt settings (a typo in a parameter number makes mallopt return 0)."""
    assert keep_freed_memory()
