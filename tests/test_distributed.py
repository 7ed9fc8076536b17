"""Evaluation backends: a 2-worker local Ray cluster gives the single-process family, replaces a
worker that dies; without Ray, --workers is a clear error; the cache survives concurrent writers."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from famc.cli import app
from famc.evaluate.backends import BackendSettings
from famc.evaluate.cache import CachedEvaluation, ResultCache
from famc.evaluate.stage import evaluate
from famc.prepare import prepare
from famc.progress import Reporter
from famc.search.stage import search
from tests.test_build import family_config

runner = CliRunner()


def _family(p, settings: BackendSettings, log=print):
    ev = CachedEvaluation(p, settings, log)
    try:
        families = search(p, ev.search_vectors, Reporter("off"))
        return families, evaluate(p, families, ev, lambda _: None), ev.evaluated
    finally:
        ev.close()


@pytest.mark.slow
def test_two_ray_workers_find_the_single_process_family(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'famc[ray]')")
    config = family_config(
        tmp_path,
        search={"population": 4, "generations": 1, "seed": 0, "baseline": "none",
                "racing": {"images": 100}},
        evaluation={"search_images": 300, "calib_images": 200, "batch_size": 100},
    )  # fmt: skip
    p = prepare(config)
    lines: list[str] = []
    cache = {"cache_dir": str(tmp_path / "inline")}
    inline = p.cfg.evaluation.model_copy(update=cache)
    one = _family(_with_eval(p, inline), BackendSettings())
    ray_eval = p.cfg.evaluation.model_copy(update={"cache_dir": str(tmp_path / "ray")})
    two = _family(_with_eval(p, ray_eval), BackendSettings(workers=2), lines.append)
    assert any("2 Ray worker(s)" in line for line in lines), lines
    (fam1, ev1, n1), (fam2, ev2, n2) = one, two
    assert [m.best.arch for m in fam1.regnas] == [m.best.arch for m in fam2.regnas]
    for a, b in zip(ev1.family.members, ev2.family.members, strict=True):
        assert torch.equal(a.test, b.test)
    assert ev1.family.summary() == ev2.family.summary() and n1 == n2 > 0


def _with_eval(p, evaluation):
    from dataclasses import replace

    return replace(p, cfg=p.cfg.model_copy(update={"evaluation": evaluation}))


def test_a_dead_worker_is_replaced_and_its_batch_rerun(tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'famc[ray]')")
    config = family_config(tmp_path, evaluation={"search_images": 200, "calib_images": 100,
                                                 "batch_size": 100})  # fmt: skip
    p = prepare(config)
    archs = [
        p.space.smallest(),
        p.space.largest(),
        *(p.space.sample(random.Random(i)) for i in range(2)),
    ]
    want = CachedEvaluation(p).evaluator
    lines: list[str] = []
    p_ray = _with_eval(p, p.cfg.evaluation.model_copy(update={"cache_dir": str(tmp_path / "r")}))
    ev = CachedEvaluation(p_ray, BackendSettings(workers=2), lines.append)
    try:
        ray.kill(ev.backend.actors[0])  # type: ignore[attr-defined]
        got = ev.correct_many(archs, "search")
    finally:
        ev.close()
    for arch, vec in zip(archs, got, strict=True):
        assert torch.equal(vec, want.correct(arch, p.search_split))
    assert any("died" in line and "replacement worker" in line for line in lines), lines


def test_workers_without_ray_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    config = family_config(tmp_path)
    result = runner.invoke(app, ["build", str(config), "--no-progress", "--workers", "2"])
    assert result.exit_code == 2, result.output
    assert "pip install 'famc[ray]'" in result.output and "--workers 2" in result.output


_WRITER = """
import sys, torch
from pathlib import Path
from famc.evaluate.cache import ResultCache
cache, tag = ResultCache(Path(sys.argv[1])), sys.argv[2]
g = torch.Generator().manual_seed(int(tag))
for i in range(400):
    cache.put(f"{tag}-{i}", torch.rand(10_000, generator=g) < 0.9)
"""


def test_cache_survives_concurrent_writers_and_torn_lines(tmp_path: Path) -> None:
    """Two processes append 400 lines of ~1.7 kB each at once: none torn or lost. A line a killed
    writer left unfinished, run into by the next writer's, costs only the torn line."""
    path = tmp_path / "cache.jsonl"
    root = str(Path(__file__).resolve().parents[1])
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(path), tag], cwd=root)
             for tag in ("1", "2")]  # fmt: skip
    assert [proc.wait(timeout=120) for proc in procs] == [0, 0]
    cache = ResultCache(path)
    assert len(cache) == 800 and cache.bad == 0
    g = torch.Generator().manual_seed(2)
    assert torch.equal(cache.get("2-0", 10_000), torch.rand(10_000, generator=g) < 0.9)
    # a torn line runs into the next writer's complete one
    text = path.read_text().splitlines(keepends=True)
    path.write_text(text[0][:50] + "".join(text[1:]))
    again = ResultCache(path)
    assert len(again) == 799 and again.bad == 1
    # a reader sees what another writer appended since; an unfinished line is counted once
    other = ResultCache(path)
    other.put("late", torch.ones(8, dtype=torch.bool))
    with path.open("a") as f:
        f.write('{"key": "half')
    again.refresh()
    again.refresh()
    assert again.get("late", 8) is not None and again.bad == 2  # the unfinished line, once
    other.put("after", torch.ones(8, dtype=torch.bool))  # runs into the unfinished line
    again.refresh()
    assert again.get("after", 8) is not None and again.bad == 2
