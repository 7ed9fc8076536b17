"""`famc train`: sandwich steps, exact resume, 2-process DDP, metrics files, clear bad-input errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from typer.testing import CliRunner

from famc.cli import app
from famc.errors import FamcError
from famc.space import get_space
from famc.supernet import build_supernet, save_checkpoint
from famc.supernet.checkpoint import read_state_dict
from famc.train import load_train_config, train
from famc.train import loop as train_loop


def _config(tmp_path: Path, folder: Path, **overrides) -> Path:
    cfg = {
        "space": "fashion-mbv3",
        "data": {"name": "folder", "root": str(folder), "channels": 1, "image_size": 28,
                 "search_size": 40, "calib_size": 64},
        "out": str(tmp_path / "run"),
        "epochs": 2,
        "batch_size": 32,
        "warmup_epochs": 0.5,
        "num_random": 1,
        "optimizer": {"lr": 0.05},
        "eval": {"num_random": 1, "batch_size": 64},
        "threads": 1,
    }  # fmt: skip
    cfg.update(overrides)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return read_state_dict(run / "supernet.safetensors")[0]


def test_training_writes_checkpoint_log_and_metrics(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder))
    metrics = train(cfg, progress=False)
    run = Path(cfg.out)
    assert set(metrics) >= {"largest", "smallest", "random"}
    on_disk = json.loads((run / "supernet.metrics.json").read_text())
    assert on_disk["largest"]["top1"] == metrics["largest"]["top1"]
    assert 0 <= on_disk["smallest"]["top1"] <= 100 and len(on_disk["random"]) == 1
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert all(r["loss_total"] > 0 and r["images_per_s"] > 0 for r in log)
    # weights changed from their initialisation and load back into a fresh supernet
    torch.manual_seed(0)
    fresh = build_supernet(get_space("fashion-mbv3")).state_dict()
    trained = _weights(run)
    assert not torch.equal(trained["first_conv.conv.weight"], fresh["first_conv.conv.weight"])
    assert not list(run.glob(".*tmp*"))


def test_learns_a_separable_task(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, epochs=6, warmup_epochs=1))
    metrics = train(cfg, progress=False)
    assert metrics["largest"]["top1"] >= 50.0  # chance is 10 %


def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_folder, monkeypatch):
    straight = load_train_config(_config(tmp_path / "a", tiny_folder, epochs=3))
    train(straight, progress=False)

    resumed = load_train_config(_config(tmp_path / "b", tiny_folder, epochs=3))
    real_checkpoint = train_loop._checkpoint

    def killed_after_first_epoch(*args, **kwargs):
        real_checkpoint(*args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "_checkpoint", killed_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, progress=False)
    monkeypatch.setattr(train_loop, "_checkpoint", real_checkpoint)
    with pytest.raises(FamcError, match="pass --resume to continue it or --force"):
        train(resumed, progress=False)
    train(resumed, resume=True, progress=False)

    a, b = _weights(Path(straight.out)), _weights(Path(resumed.out))
    for k in a:
        assert torch.equal(a[k], b[k]), k
    log = (Path(resumed.out) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in log] == [1, 2, 3]


def test_resume_refuses_mismatched_state(tmp_path, tiny_folder):
    cfg = load_train_config(_config(tmp_path, tiny_folder, epochs=1))
    train(cfg, progress=False)
    save_checkpoint(build_supernet(get_space("fashion-mbv3")), Path(cfg.out) / "supernet.safetensors",
                    {"space": "fashion-mbv3"})  # fmt: skip
    with pytest.raises(FamcError, match="does not match"):
        train(cfg, resume=True, progress=False)


def _update(run: Path) -> torch.Tensor:
    """All trainable weights' change from the seeded initialisation, as one vector."""
    torch.manual_seed(0)
    init = build_supernet(get_space("fashion-mbv3")).state_dict()
    w = _weights(run)
    keys = [k for k in w if w[k].is_floating_point() and "running" not in k]
    return torch.cat([(w[k] - init[k]).flatten() for k in keys])


def test_two_process_ddp_matches_single_process(tmp_path, tiny_folder):
    settings = {"epochs": 1, "max_steps_per_epoch": 3, "eval": {"num_random": 0},
                "optimizer": {"lr": 0.005}}  # fmt: skip
    single = load_train_config(_config(tmp_path / "single", tiny_folder, **settings))
    train(single, progress=False)
    cfg_ddp = _config(tmp_path / "ddp", tiny_folder, **settings)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "famc", "train", str(cfg_ddp), "--no-progress"],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    a, b = _update(Path(single.out)), _update(tmp_path / "ddp" / "run")
    # Same global batches, sub-networks and dropout masks; BN statistics are reduced across the
    # two 16-image shards: only float rounding separates DDP from one process. Early training
    # amplifies rounding: two single-process runs differing only in thread count (1 vs 2) end
    # 1.4e-3 apart under these settings, DDP ~8e-4 — so the bound is that noise floor.
    assert (a - b).abs().max().item() <= 2e-3, (a - b).abs().max().item()
    assert torch.nn.functional.cosine_similarity(a, b, dim=0).item() > 0.99
    log = json.loads((tmp_path / "ddp" / "run" / "metrics.jsonl").read_text().splitlines()[0])
    single_log = json.loads((Path(single.out) / "metrics.jsonl").read_text().splitlines()[0])
    assert log["loss_total"] == pytest.approx(single_log["loss_total"], rel=0.05)  # rank 0's half


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"space": "mbv9"}, r"field `space`: unknown space preset 'mbv9'; choose one of"),
        ({"data": {"name": "imagenet-1k"}}, r"field `data.name`: unknown dataset 'imagenet-1k'"),
        ({"optimizer": {"name": "adamw"}}, r"field `optimizer.name`: Input should be 'sgd'"),
        ({"epochs": 0}, r"field `epochs`: Input should be greater than 0"),
        ({"lr": 0.1}, r"field `lr`: unknown field"),
    ],
)
def test_bad_config_names_field(tmp_path, tiny_folder, override, message):
    with pytest.raises(FamcError, match=message):
        load_train_config(_config(tmp_path, tiny_folder, **override))


def test_checkpoint_of_another_preset(tmp_path, tiny_folder):
    other = tmp_path / "ofa.safetensors"
    save_checkpoint(build_supernet(get_space("ofa-mbv3-w1.0")), other, {"space": "ofa-mbv3-w1.0"})
    cfg = load_train_config(_config(tmp_path, tiny_folder, init=str(other)))
    with pytest.raises(FamcError, match="trained for space 'ofa-mbv3-w1.0', not 'fashion-mbv3'"):
        train(cfg, progress=False)


def test_empty_data_dir_and_cli_one_line_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cfg = _config(tmp_path, empty)
    result = CliRunner().invoke(app, ["train", str(cfg), "--no-progress"])
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(empty) in lines[0]
    assert "Traceback" not in result.output
