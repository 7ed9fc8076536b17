"""Hostile inputs and a flaky machine, for every command: each case ends in one ``error:`` line and
its exit code (2: bad input, 3: a check failed), or a correct success, and nothing that famc did
not write is ever changed or deleted."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import onnx
import pytest
import torch
import yaml
from onnx import numpy_helper
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

import famc.io
from famc.cli import app

ROOT = Path(__file__).resolve().parents[1]
SUPERNET = ROOT / "examples" / "fashion" / "supernet" / "supernet.safetensors"
TABLE = ROOT / "latency_tables" / "fashion-mbv3_ort-cpu_t1.yaml"
runner = CliRunner()


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """sha256 of every file under ``root`` (except the named top-level entries famc owns)."""
    out = {}
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if p.is_file() and not p.is_symlink() and rel.parts[0] not in skip:
            out[rel.as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def run(*args: str, code: int) -> str:
    """Invoke famc; assert the exit code and, for a failure, exactly one error line and no
    traceback. Returns the output."""
    result = runner.invoke(app, [str(a) for a in args])
    out = result.output
    assert result.exit_code == code, out
    assert "Traceback" not in out, out
    if code in (2, 3):
        errors = [ln for ln in out.splitlines() if ln.startswith("error:")]
        assert len(errors) >= 1, out
        if code == 2:
            assert len(errors) == 1, out
    return out


def workspace(tmp: Path, **overrides: object) -> Path:
    """A user's directory: a tiny family config, its own targets, and a file of theirs."""
    tmp.mkdir(parents=True, exist_ok=True)
    for name in ("edge", "cloud"):
        target = {"name": name, "description": "test", "runtime": "ort-cpu", "threads": 1,
                  "precision": "fp32", "export": ["onnx"], "tables": {"fashion-mbv3": str(TABLE)}}  # fmt: skip
        (tmp / f"{name}.yaml").write_text(yaml.safe_dump(target))
    cfg = {
        "space": "fashion-mbv3",
        "supernet": str(SUPERNET),
        "data": {"name": "fashion-mnist", "search_size": 10000, "calib_size": 2000},
        "evaluation": {"search_images": 200, "calib_images": 100, "cache_dir": str(tmp / "cache")},
        "members": [
            {"name": "edge", "target": "edge.yaml", "budget": {"mflops": 3.0}},
            {"name": "cloud", "target": "cloud.yaml", "budget": {"mflops": 8.0}},
        ],
        "search": {"population": 4, "generations": 0, "seed": 0, "baseline": "none"},
        "out": str(tmp / "release"),
        # a busy test host does not run at the shipped table's latency (see tests/test_build.py)
        "gates": {"latency_within_budget": False, "latency_table_error": False},
    } | overrides
    (tmp / "family.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    (tmp / "notes.tex").write_text("\\section{mine}\n")
    return tmp / "family.yaml"


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = workspace(tmp_path_factory.mktemp("hostile"))
    run("build", config, "--no-progress", code=0)
    return config.parent / "release"


@pytest.fixture
def copy(release: Path, tmp_path: Path) -> Path:
    out = tmp_path / "release"
    shutil.copytree(release, out, symlinks=True)
    return out


# ---------------------------------------------------------------- famc build: outputs


@pytest.mark.parametrize("case", ["user_dir", "config_dir", "file", "dot", "dangling", "long"])
def test_build_never_writes_over_what_famc_did_not_make(tmp_path: Path, case: str) -> None:
    config = workspace(tmp_path)
    (tmp_path / "user").mkdir()
    (tmp_path / "user" / "sub").mkdir()
    (tmp_path / "user" / "sub" / "data.csv").write_text("a,b\n")
    (tmp_path / "plain.txt").write_text("mine\n")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    out = {"user_dir": tmp_path / "user", "config_dir": tmp_path, "file": tmp_path / "plain.txt",
           "dot": Path("."), "dangling": tmp_path / "link", "long": tmp_path / ("x" * 300)}[case]  # fmt: skip
    before = snapshot(tmp_path)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        out_text = run("build", config, "--out", out, "--force", "--no-progress", code=2)
    finally:
        os.chdir(cwd)
    assert snapshot(tmp_path) == before
    assert "--out" in out_text or str(out)[:40] in out_text


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EROFS])
def test_build_on_a_full_or_read_only_disk(tmp_path: Path, err: int, monkeypatch) -> None:
    config = workspace(tmp_path, search={"population": 4, "generations": 0, "baseline": "none"})

    def refuse(*args: object, **kwargs: object) -> None:
        raise OSError(err, os.strerror(err), str(tmp_path / "release"))

    monkeypatch.setattr(famc.io, "tmp_sibling", refuse)
    out = run("build", config, "--no-progress", code=2)
    assert os.strerror(err) in out
    assert not (tmp_path / "release").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".release")]


def test_force_replaces_only_famc_releases_and_cleans_stale_staging(copy: Path) -> None:
    parent = copy.parent
    stale = parent / f".release.{famc.io._host_tag()}-{2**22 + 7}-x1y2.tmp.build"  # a dead pid
    stale.mkdir()
    (stale / "partial.bin").write_bytes(b"\0")
    foreign = parent / ".release.other.tmp.build"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not famc's\n")
    with famc.io.staged_directory(copy) as tmp:
        (tmp / "new.txt").write_text("new\n")
    assert (copy / "new.txt").is_file() and (copy / famc.io.RELEASE_MARKER).is_file()
    assert not (copy / "family.json").exists()  # the old release was replaced as a whole
    assert not stale.exists() and (foreign / "keep.txt").is_file()


def test_a_kill_at_any_instant_leaves_a_release(tmp_path: Path) -> None:
    """kill -9 a process that republishes a release in a loop, at random instants."""
    out = tmp_path / "release"
    with famc.io.staged_directory(out) as tmp:
        (tmp / "gen").write_text("0\n")
    script = (
        "import sys, pathlib, famc.io\n"
        "out = pathlib.Path(sys.argv[1])\n"
        "for i in range(10**6):\n"
        "    with famc.io.staged_directory(out) as tmp:\n"
        "        (tmp / 'gen').write_text(f'{i}\\n')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for delay in (0.6, 0.75, 0.9, 1.05, 1.2, 1.35):
        proc = subprocess.Popen([sys.executable, "-c", script, str(out)], env=env)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with famc.io.staged_directory(out) as tmp:  # the next run restores or cleans what it owns
            (tmp / "gen").write_text("after\n")
        assert (out / "gen").read_text() == "after\n"
        assert sorted(p.name for p in tmp_path.iterdir()) == ["release"]


# ---------------------------------------------------------------- famc build / validate: inputs


def _bad_supernet(tmp: Path) -> Path:
    state = load_file(str(SUPERNET))
    key = next(k for k, v in state.items() if v.is_floating_point())
    state[key][0] = float("nan")
    path = tmp / "nan.safetensors"
    save_file(state, str(path), metadata={"space": "fashion-mbv3"})
    return path


def _negative_table(tmp: Path) -> Path:
    data = yaml.safe_load(TABLE.read_text())
    data["metadata"]["correction"]["intercept_ms"] = -5.0
    path = tmp / "neg.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("case", ["nan_weights", "negative_table", "latin1_table",
                                  "latin1_target", "long_member", "pickle_supernet"])  # fmt: skip
def test_bad_inputs_are_one_line(tmp_path: Path, case: str) -> None:
    config = workspace(tmp_path)
    cfg = yaml.safe_load(config.read_text())
    if case == "nan_weights":
        cfg["supernet"] = str(_bad_supernet(tmp_path))
    elif case == "pickle_supernet":
        (tmp_path / "evil.pth").write_bytes(pickle.dumps({"w": Path("x")}))
        cfg["supernet"] = str(tmp_path / "evil.pth")
    elif case == "long_member":
        cfg["members"][0]["name"] = "m" * 300
    else:
        table = _negative_table(tmp_path) if case == "negative_table" else tmp_path / "t.yaml"
        if case == "latin1_table":
            table.write_bytes(TABLE.read_bytes().replace(b"# famc", "# caf\xe9".encode("latin-1")))
        target = yaml.safe_load((tmp_path / "edge.yaml").read_text())
        target["tables"] = {"fashion-mbv3": str(table)}
        (tmp_path / "edge.yaml").write_text(yaml.safe_dump(target))
        if case == "latin1_target":
            (tmp_path / "edge.yaml").write_bytes(b"description: caf\xe9\n")
        cfg["members"][0]["budget"] = {"latency_ms": 0.1}
    config.write_text(yaml.safe_dump(cfg))
    before = snapshot(tmp_path)
    out = run("validate", config, code=2)
    expected = {"nan_weights": "NaN", "negative_table": "positive", "latin1_table": "UTF-8",
                "latin1_target": "UTF-8", "long_member": "members.0.name",
                "pickle_supernet": "weights-only"}[case]  # fmt: skip
    assert expected in out
    assert snapshot(tmp_path) == before


def test_empty_idx_file_is_one_line(tmp_path: Path, monkeypatch) -> None:
    data = tmp_path / "data"
    data.mkdir()
    import gzip

    for name, header in (("train-images-idx3-ubyte.gz", b"\0\0\x08\x03" + (0).to_bytes(4, "big")
                          + (28).to_bytes(4, "big") * 2),
                         ("train-labels-idx1-ubyte.gz", b"\0\0\x08\x01" + (0).to_bytes(4, "big")),
                         ("t10k-images-idx3-ubyte.gz", b"\0\0\x08\x03" + (0).to_bytes(4, "big")
                          + (28).to_bytes(4, "big") * 2),
                         ("t10k-labels-idx1-ubyte.gz", b"\0\0\x08\x01" + (0).to_bytes(4, "big"))):  # fmt: skip
        (data / name).write_bytes(gzip.compress(header))
    monkeypatch.setenv("FAMC_DATA_DIR", str(data))
    out = run("validate", workspace(tmp_path / "ws"), code=2)
    assert "holds no images" in out


# ---------------------------------------------------------------- famc verify


def _perturb(path: Path, scale: float) -> None:
    proto = onnx.load(str(path))
    init = next(i for i in proto.graph.initializer if numpy_helper.to_array(i).ndim == 2)
    init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * scale, init.name))
    onnx.save(proto, str(path))


def test_verify_passes_a_clean_release_and_notes_strays(copy: Path) -> None:
    (copy / "members" / ".DS_Store").write_bytes(b"\0")
    out = run("verify", copy, code=0)
    assert "passed" in out and ".DS_Store" in out


@pytest.mark.parametrize("case", ["tiny_change", "loosened_atol", "deleted_member",
                                  "deleted_onnx", "deleted_family_json", "edited_family_json",
                                  "truncated_golden", "artifacts_list"])  # fmt: skip
def test_verify_trusts_nothing_editable(copy: Path, case: str) -> None:
    edge = copy / "members" / "edge"
    if case in ("tiny_change", "loosened_atol"):
        _perturb(edge / "model.onnx", 1.0 + (1e-6 if case == "tiny_change" else 0.05))
    if case == "loosened_atol":
        manifest = json.loads((edge / "artifacts.json").read_text())
        manifest["artifacts"]["onnx"]["atol"] = 10.0
        (edge / "artifacts.json").write_text(json.dumps(manifest))
    if case == "deleted_member":
        shutil.rmtree(edge)
    if case == "deleted_onnx":
        (edge / "model.onnx").unlink()
    if case == "deleted_family_json":
        (copy / "family.json").unlink()
    if case == "edited_family_json":
        doc = json.loads((copy / "family.json").read_text())
        doc["members"][0]["top1"] = 99.9
        (copy / "family.json").write_text(json.dumps(doc))
    if case == "truncated_golden":
        golden = edge / "golden.safetensors"
        golden.write_bytes(golden.read_bytes()[:100])
    if case == "artifacts_list":
        (edge / "artifacts.json").write_text("[]")
    out = run("verify", copy, code=3)
    assert "verification failed" in out


@pytest.mark.parametrize("case", ["list", "string_atol", "truncated_golden"])
def test_verify_a_standalone_member_with_broken_records(copy: Path, tmp_path: Path,
                                                        case: str) -> None:  # fmt: skip
    member = tmp_path / "edge"
    shutil.copytree(copy / "members" / "edge", member)
    manifest = json.loads((member / "artifacts.json").read_text())
    if case == "list":
        (member / "artifacts.json").write_text("[1, 2]")
    elif case == "string_atol":
        manifest["artifacts"]["onnx"]["atol"] = "loose"
        (member / "artifacts.json").write_text(json.dumps(manifest))
    else:
        (member / "golden.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{")
    out = run("verify", member, code=2 if case != "truncated_golden" else 3)
    assert str(member) in out or "golden" in out


# ---------------------------------------------------------------- famc export


@pytest.mark.parametrize("case", ["not_json", "no_space", "truncated_weights"])
def test_export_of_a_damaged_member_is_one_line(copy: Path, case: str) -> None:
    edge = copy / "members" / "edge"
    if case == "not_json":
        (edge / "arch.json").write_text("{not json")
    elif case == "no_space":
        info = json.loads((edge / "arch.json").read_text())
        del info["space"]
        (edge / "arch.json").write_text(json.dumps(info))
    else:
        weights = edge / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:1000])
    out = run("export", edge, "--format", "onnx", code=2)
    assert str(edge) in out


def test_export_with_a_parity_failure_exits_3(copy: Path, monkeypatch) -> None:
    import famc.export.onnx as onnx_mod

    real = onnx_mod.export_onnx

    def corrupt(*args: object, **kwargs: object) -> Path:
        path = real(*args, **kwargs)  # type: ignore[arg-type]
        _perturb(path, 1.05)
        return path

    monkeypatch.setattr(onnx_mod, "export_onnx", corrupt)
    out = run("export", copy / "members" / "edge", "--format", "onnx", code=3)
    assert "onnx: failed" in out


# ---------------------------------------------------------------- famc train --resume


def _train_config(tmp: Path, tiny_folder: Path) -> Path:
    cfg = {"space": "fashion-mbv3", "out": str(tmp / "run"), "epochs": 2, "batch_size": 16,
           "num_random": 1, "max_steps_per_epoch": 2, "threads": 1,
           "data": {"name": "folder", "root": str(tiny_folder), "image_size": 28, "channels": 1,
                    "search_size": 20, "calib_size": 16},
           "eval": {"num_random": 0, "batch_size": 64}}  # fmt: skip
    path = tmp / "train.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize("case", ["truncated_state", "pickle_state", "missing_supernet",
                                  "torn_log"])  # fmt: skip
def test_resume_validates_its_state(tmp_path: Path, tiny_folder: Path, case: str) -> None:
    config = _train_config(tmp_path, tiny_folder)
    run("train", config, "--no-progress", code=0)
    out = tmp_path / "run"
    state = out / "train_state.pt"
    if case == "truncated_state":
        state.write_bytes(state.read_bytes()[:200])
    elif case == "pickle_state":
        torch.save({"epoch": 1, "evil": Path("x")}, state)  # a pickled object: not weights-only
    elif case == "missing_supernet":
        (out / "supernet.safetensors").unlink()
    else:
        with open(out / "metrics.jsonl", "a") as f:
            f.write('{"epoch": 3, "lo')
    code = 0 if case == "torn_log" else 2
    text = run("train", config, "--resume", "--no-progress", code=code)
    if code == 2:
        assert "--force" in text or "train_state.pt" in text


# ---------------------------------------------------------------- famc profile


@pytest.mark.parametrize("case", ["directory", "latin1", "threads"])
def test_profile_refuses_bad_outputs_and_options(tmp_path: Path, case: str) -> None:
    out = tmp_path / "t.yaml"
    threads = "0" if case == "threads" else "1"
    if case == "directory":
        out.mkdir()
    if case == "latin1":
        out.write_bytes(b"metadata: caf\xe9\n")
    before = snapshot(tmp_path)
    run("profile", "--space", "fashion-mbv3", "--runtime", "ort-cpu", "--threads", threads,
        "--out", out, "--no-progress", code=2)  # fmt: skip
    assert snapshot(tmp_path) == before
