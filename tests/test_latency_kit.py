"""famc.latency.kit / importers: kits for devices that cannot run Python, and reading back what
their tools wrote (fixtures in tests/data/latency_kit, written from each tool's documented format)."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from famc.cli import app
from famc.errors import FamcError
from famc.io import RELEASE_MARKER, sha256_path
from famc.latency import LatencyTable, all_signatures
from famc.latency.importers import (
    IMPORTERS,
    import_kit,
    parse_csv,
    parse_perf_test,
    parse_trtexec,
)
from famc.latency.kit import RUNNER, TEMPLATE, Manifest, export_kit
from famc.latency.measure import Timing
from famc.space import SearchSpace, describe
from tests.test_latency import tiny_space

FIXTURES = Path(__file__).parent / "data" / "latency_kit"
FACTORS = (0.97, 1.0, 1.0, 1.02, 1.25)  # per-call multiples of a graph's median the stubs write
P90 = float(np.percentile(FACTORS, 90))
PROBE_MS = 0.0123
runner = CliRunner()


def small_space() -> SearchSpace:
    return tiny_space(kernel_choices=(3,), expand_choices=(2,), depth_choices=(1,))


@pytest.fixture(scope="module")
def kit(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("kit") / "kit"
    export_kit(tiny_space(), "onnx", out, validate=2, progress=False)
    return out


@pytest.fixture
def kit_copy(kit: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(kit, tmp_path / "kit"))


def truth(kit: Path) -> dict[str, float]:
    """A known median per graph id (ms): layer entry + probe, a network's layer sum + probe."""
    m, space = Manifest.load(kit), tiny_space()
    rng = random.Random(0)
    entry = {s: rng.randint(10, 500) / 1e4 for s in all_signatures(space)}
    out = {"probe": PROBE_MS}
    for g, v in m.graphs.items():
        if v.signature is not None:
            out[g] = entry[v.signature] + PROBE_MS
        elif v.arch is not None:
            layers = describe(space, space.arch_from_dict(v.arch))
            out[g] = sum(entry[layer.signature()] for layer in layers) + PROBE_MS
    return out


# --- export -----------------------------------------------------------------------------------
def test_kit_holds_a_graph_per_signature_probe_and_networks(kit: Path) -> None:
    import onnxruntime as ort

    m = Manifest.load(kit)
    assert m.space == "tiny" and m.format == "onnx" and m.batch == 1
    layers = {m.graphs[g].signature for g in m.ids("layer")}
    assert layers == set(all_signatures(tiny_space())) and len(m.ids("layer")) == len(layers)
    assert m.ids("probe") == ["probe"] and len(m.ids("fit")) == len(m.ids("holdout")) == 2
    for g, v in m.graphs.items():
        assert re.fullmatch(r"[a-z0-9]+", g) and v.file == f"graphs/{g}.onnx"
        assert sha256_path(kit / v.file) == v.sha256
        sess = ort.InferenceSession(str(kit / v.file), providers=["CPUExecutionProvider"])
        [inp] = sess.get_inputs()
        assert inp.name == "input" and inp.shape == ["batch", *v.shape[1:]]
        sess.run(None, {"input": np.zeros(v.shape, dtype=np.float32)})
    script = (kit / RUNNER).read_text()
    assert (kit / RUNNER).stat().st_mode & stat.S_IXUSR
    subprocess.run(["sh", "-n", str(kit / RUNNER)], check=True)
    for g, v in m.graphs.items():
        assert f"\nrun {g} {'x'.join(map(str, v.shape))}\n" in script
    assert (kit / TEMPLATE).read_text().splitlines()[1:] == [f"{g},," for g in m.graphs]


def test_export_kit_refuses_what_it_did_not_write_and_replaces_its_own(tmp_path: Path) -> None:
    foreign = tmp_path / "mine"
    (foreign / "notes.txt").parent.mkdir()
    (foreign / "notes.txt").write_text("keep")
    for force in (False, True):
        with pytest.raises(FamcError, match="already exists|not written by famc"):
            export_kit(small_space(), "onnx", foreign, validate=0, force=force, progress=False)
    assert (foreign / "notes.txt").read_text() == "keep"
    out = tmp_path / "kit"
    export_kit(small_space(), "onnx", out, validate=0, progress=False)
    assert (out / RELEASE_MARKER).is_file()
    (out / "results" / "csv" / "latency.csv").write_text("stale")
    with pytest.raises(FamcError, match="pass --force"):
        export_kit(small_space(), "onnx", out, validate=0, progress=False)
    export_kit(small_space(), "onnx", out, validate=0, force=True, progress=False)
    assert not (out / "results" / "csv" / "latency.csv").exists()
    assert len(Manifest.load(out).ids("layer")) == len(all_signatures(small_space()))


def test_coreml_kit_writes_packages_at_the_timed_shape(tmp_path: Path) -> None:
    ct = pytest.importorskip("coremltools")
    out = tmp_path / "kit"
    export_kit(small_space(), "coreml", out, validate=0, progress=False)
    m = Manifest.load(out)
    assert m.format == "coreml" and len(m.ids("layer")) == len(all_signatures(small_space()))
    for g in ("probe", m.ids("layer")[0]):
        v = m.graphs[g]
        assert v.file == f"graphs/{g}.mlpackage" and (out / v.file).is_dir()
        assert sha256_path(out / v.file) == v.sha256
        spec = ct.utils.load_spec(str(out / v.file))
        [inp] = spec.description.input
        assert inp.name == "input" and list(inp.type.multiArrayType.shape) == v.shape
    done = subprocess.run(["sh", str(out / RUNNER)], capture_output=True, text=True)
    assert done.returncode == 2 and "Xcode" in done.stderr
    with pytest.raises(FamcError, match="coreml kit cannot be timed by trtexec; use --tool csv"):
        import_kit(small_space(), out, "trtexec", tmp_path / "t.yaml")


# --- the tools' documented formats ------------------------------------------------------------
@pytest.mark.parametrize(
    ("fixture", "parse", "median", "p90", "n"),
    [
        ("perf_test_result.txt", parse_perf_test, 0.1205, 0.1329, 10),
        ("perf_test_stdout.txt", parse_perf_test, 0.119, 0.131, 1000),
        ("perf_test_stdout_old.txt", parse_perf_test, 58.7108, 59.9845, 1000),
        ("trtexec_times.json", parse_trtexec, 0.12207, 0.1283204, 5),
        ("trtexec_times_trt7.json", parse_trtexec, 0.13379, 0.1345708, 3),
    ],
)
def test_tool_outputs_parse(fixture: str, parse, median: float, p90: float, n: int) -> None:  # type: ignore[no-untyped-def]
    t = parse((FIXTURES / fixture).read_text())
    assert t.median_ms == pytest.approx(median, abs=1e-6)
    assert t.p90_ms == pytest.approx(p90, abs=1e-6) and t.n == n


def test_perf_test_mean_only_stands_for_median_and_p90() -> None:
    text = (FIXTURES / "perf_test_stdout.txt").read_text()
    summary = "\n".join(ln for ln in text.splitlines() if "Latency" not in ln)
    assert parse_perf_test(summary) == Timing(0.120687, 0.120687, 1000)


def test_csv_fixture_parses_by_graph_id_or_signature(kit: Path) -> None:
    m = Manifest.load(kit)
    t = parse_csv((FIXTURES / "latency.csv").read_text(), m)
    by_sig = {v.signature: g for g, v in m.graphs.items()}
    sig = "mbconv:in4x4x16:out4x4x16:mid48:k5:s1:skip1:se1:h_swish:exp1"
    assert t == {
        "probe": Timing(0.0105, 0.0121, 1),
        "layer000": Timing(0.0311, 0.0311, 1),
        "net000": Timing(0.52, 0.61, 1),
        by_sig[sig]: Timing(0.2, 0.25, 1),
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,median_ms\nprobe,1\n", "expected graph,median_ms"),
        ("graph,median_ms,notes\nprobe,1,x\n", "expected graph,median_ms"),
        ("graph,median_ms\nlayer999,1\n", "line 2: 'layer999' is neither a graph id"),
        ("graph,median_ms\nprobe,1\nprobe,2\n", "line 3: 'probe' repeats"),
        ("graph,median_ms\nprobe,\n", "line 2: median_ms '' is not a number"),
        ("graph,median_ms,p90_ms\nprobe,2,1\n", "p90_ms 1.0 is below median_ms 2.0"),
        ("graph,median_ms\nprobe,-1\n", "not a non-negative number"),
        ("graph,median_ms\nprobe,1,2\n", "3 fields, the header has 2"),
    ],
)
def test_csv_defects_are_named(kit: Path, text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_csv(text, Manifest.load(kit))


@pytest.mark.parametrize(
    ("parse", "text"),
    [
        (parse_perf_test, "Session creation time cost: 0.01 s\n"),
        (parse_trtexec, "[]"),
        (parse_trtexec, '[{"computeMs": 0.1}]'),
        (parse_trtexec, "not json"),
    ],
)
def test_unparsable_outputs_raise(parse, text: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError):
        parse(text)


# --- round trips: run.sh drives stub tools that print a known table's figures ------------------
STUB = r"""#!{python}
import json, pathlib, sys
values = json.loads(pathlib.Path({values!r}).read_text())
args = sys.argv[1:]
with open({log!r}, "a") as log:
    log.write(" ".join(args) + "\n")
factors = {factors!r}
if {tool!r} == "onnxruntime_perf_test":
    model, result = args[-2:]
    v = values[pathlib.Path(model).stem]
    with open(result, "a") as f:  # the tool's result file: name,seconds,bytes,cpu%,run
        for i, k in enumerate(factors):
            f.write(f"graphs,{{v * k / 1e3!r}},27648000,99,{{i}}\n")
else:
    opt = dict(a[2:].split("=", 1) for a in args if "=" in a)
    v = values[pathlib.Path(opt["onnx"]).stem]
    json.dump([{{"computeMs": v * k, "latencyMs": v * k}} for k in factors],
              open(opt["exportTimes"], "w"))
"""


def run_stub(kit: Path, tool: str) -> str:
    """Run the kit's run.sh with ``tool`` replaced by a stub; returns the stub's argument log."""
    values, log = kit / "truth.json", kit / "argv.log"
    values.write_text(json.dumps(truth(kit)))
    stub = kit / "stub.py"
    stub.write_text(STUB.format(python=sys.executable, values=str(values), log=str(log),
                                factors=FACTORS, tool=tool))  # fmt: skip
    stub.chmod(0o755)
    env = os.environ | {"PERF_TEST": str(stub), "TRTEXEC": str(stub), "REPS": "5", "THREADS": "2"}
    subprocess.run(["sh", str(kit / RUNNER), tool], env=env, check=True, capture_output=True)
    return log.read_text()


def check_round_trip(table: LatencyTable, kit: Path, p90: bool = True) -> None:
    m, known = Manifest.load(kit), truth(kit)
    assert table.metadata.call_overhead_ms == pytest.approx(PROBE_MS, abs=1e-9)
    for g in m.ids("layer"):
        e = table.entries[m.graphs[g].signature or ""]
        assert e.median_ms == pytest.approx(known[g] - PROBE_MS, abs=1e-9)
        if p90:
            assert e.p90_ms == pytest.approx(known[g] * P90 - PROBE_MS, abs=1e-4)
    v = table.metadata.validation
    assert v is not None and (v.n_fit, v.n_holdout) == (2, 2) and v.mape < 1e-3
    space = tiny_space()
    for g in m.ids("fit", "holdout"):
        arch = space.arch_from_dict(m.graphs[g].arch or {})
        assert table.predict(arch, space) == pytest.approx(known[g], rel=1e-3)


def test_perf_test_round_trip_through_run_sh(kit_copy: Path, tmp_path: Path) -> None:
    argv = run_stub(kit_copy, "onnxruntime_perf_test")
    assert "-I -m times -r 5 -x 2 -f batch:1 graphs/layer004.onnx" in argv
    report = import_kit(tiny_space(), kit_copy, "onnxruntime_perf_test", tmp_path / "t.yaml")
    table = LatencyTable.load(tmp_path / "t.yaml")
    check_round_trip(table, kit_copy)
    m = table.metadata
    assert (m.runtime, m.threads, m.repeats, m.batch) == ("ort-cpu", 2, 5, 1)
    assert m.device.platform != "unknown" and m.device.cores >= 1
    assert "21 layer(s) timed by onnxruntime_perf_test (ort-cpu" in report.summary()
    assert "on 2 others: MAPE 0.0%, within ±10% 100%" in report.summary()


def test_trtexec_round_trip_through_run_sh(kit_copy: Path, tmp_path: Path) -> None:
    argv = run_stub(kit_copy, "trtexec")
    assert "--onnx=graphs/layer004.onnx --shapes=input:1x8x16x16" in argv
    assert "--iterations=5 --noDataTransfers --exportTimes=results/trtexec/layer004.json" in argv
    import_kit(tiny_space(), kit_copy, "trtexec", tmp_path / "t.yaml")
    table = LatencyTable.load(tmp_path / "t.yaml")
    check_round_trip(table, kit_copy)
    assert table.metadata.runtime == "tensorrt"


def test_csv_round_trip_keyed_by_signature_or_id(kit_copy: Path, tmp_path: Path) -> None:
    m, known = Manifest.load(kit_copy), truth(kit_copy)
    rows = [f"{m.graphs[g].signature or g},{v!r}," for g, v in known.items()]
    (kit_copy / "results" / "csv" / "latency.csv").write_text("\n".join(["signature,median_ms,p90_ms", *rows]))  # fmt: skip
    report = import_kit(tiny_space(), kit_copy, "csv", tmp_path / "t.yaml", runtime="coreml",
                        device="iPhone 15 Pro", cores=6, runtime_version="iOS 18.1")  # fmt: skip
    table = LatencyTable.load(tmp_path / "t.yaml")
    check_round_trip(table, kit_copy, p90=False)
    meta = table.metadata
    assert (meta.runtime, meta.runtime_version, meta.device.cpu, meta.device.cores) == (
        "coreml",
        "iOS 18.1",
        "iPhone 15 Pro",
        6,
    )
    assert report.device_known
    with pytest.raises(FamcError, match="pass --force"):
        import_kit(tiny_space(), kit_copy, "csv", tmp_path / "t.yaml", runtime="coreml")
    again = import_kit(tiny_space(), kit_copy, "csv", tmp_path / "t.yaml", runtime="coreml",
                       force=True)  # fmt: skip
    assert not again.device_known and "device unknown" in again.summary()
    assert again.table.metadata.device.cpu == "unknown"


# --- errors: one line naming the file and the fix ---------------------------------------------
def test_import_errors_name_the_file_and_fix(kit_copy: Path, tmp_path: Path) -> None:
    out, space = tmp_path / "t.yaml", tiny_space()
    cases = [
        ("trtexec", {}, r"results/trtexec/probe\.json: missing; run `\./run\.sh trtexec`"),
        ("csv", {}, "--tool csv needs --runtime"),
        ("csv", {"runtime": "nope"}, "unknown --runtime 'nope'"),
        ("csv", {"runtime": "coreml"}, r"results/csv/latency\.csv: missing; fill in a copy"),
        ("nvprof", {}, "--tool 'nvprof': choose one of onnxruntime_perf_test, trtexec, csv"),
    ]
    for tool, kw, message in cases:
        with pytest.raises(FamcError, match=message) as exc:
            import_kit(space, kit_copy, tool, out, **kw)
        assert "\n" not in str(exc.value)
    perf = kit_copy / "results" / "onnxruntime_perf_test"
    perf.mkdir(parents=True)
    (perf / "probe.txt").write_text("Session creation time cost: 0.01 s\n")
    with pytest.raises(FamcError, match=r"probe\.txt: not onnxruntime_perf_test output .*again"):
        import_kit(space, kit_copy, "onnxruntime_perf_test", out)
    (kit_copy / "results" / "csv" / "latency.csv").write_text("graph,median_ms\nprobe,0.1\n")
    with pytest.raises(
        FamcError, match=r"no row for \d+ graph\(s\) of the kit: layer000, layer001"
    ):
        import_kit(space, kit_copy, "csv", out, runtime="ort-cpu")
    with pytest.raises(FamcError, match="kit exported for space 'tiny', not 'other'"):
        import_kit(tiny_space(name="other"), kit_copy, "csv", out, runtime="ort-cpu")
    with pytest.raises(FamcError, match="not the layers tiny has now"):
        import_kit(small_space(), kit_copy, "csv", out, runtime="ort-cpu")
    assert not out.exists()


def test_cli_export_and_import(kit: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("famc.latency.kit.get_space", lambda name: small_space())
    out = tmp_path / "kit"
    result = runner.invoke(app, ["profile", "export-kit", "--space", "tiny", "--format", "onnx",
                                 "--out", str(out), "--validate", "0", "--no-progress"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "the probe, 0 fit and 0 hold-out network(s) (onnx)" in result.output
    result = runner.invoke(app, ["profile", "export-kit", "--space", "tiny", "--format", "onnx",
                                 "--out", str(out), "--validate", "0"])  # fmt: skip
    assert result.exit_code == 2 and "already exists: pass --force" in result.output
    result = runner.invoke(app, ["profile", "import", "--space", "fashion-mbv3", "--from",
                                 str(kit), "--tool", "trtexec", "--out", str(tmp_path / "t.yaml")])  # fmt: skip
    assert result.exit_code == 2
    assert result.output.count("error:") == 1 and "kit exported for space 'tiny'" in result.output


def test_every_importer_names_a_runtime_or_asks_for_one() -> None:
    assert {t: i.runtime for t, i in IMPORTERS.items()} == {
        "onnxruntime_perf_test": "ort-cpu",
        "trtexec": "tensorrt",
        "csv": None,
    }


def test_coreml_runtime_is_timed_only_through_a_kit() -> None:
    from famc.latency.runtimes import RUNTIMES, Graph, unavailable

    assert "famc profile export-kit --format coreml" in (unavailable("coreml") or "")
    with pytest.raises(FamcError, match="measured on the Apple device"):
        RUNTIMES["coreml"].session(Graph(torch.nn.Identity(), (1, 1)), 1)
