"""famc.report: both reports render every section from a synthetic release, stay self-contained,
and say so (instead of crashing) when optional blocks are missing."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from famc.config import GatesConfig
from famc.errors import FamcError
from famc.metrics import Pair as PairRecord
from famc.report import write_report
from famc.report.gates import check_gates
from famc.report.release import FamilyBlock, FamilyManifest, LatencyMs, MemberRecord
from famc.report.tables import (
    NO_BASELINE,
    NO_FINETUNE,
    NO_GATES,
    NO_MEASURED,
    NOT_EXPORTED,
    NOT_SHARED,
)

NAMES = ("tiny", "mid", "big")
TOP1 = {"tiny": 81.234, "mid": 85.5, "big": 88.875}
BASE_TOP1 = {"tiny": 81.9, "mid": 86.1, "big": 89.2}
NFR = {("tiny", "mid"): 1.2345, ("tiny", "big"): 0.875, ("mid", "big"): 2.5}
BASE_NFR = {("tiny", "mid"): 3.1, ("tiny", "big"): 2.25, ("mid", "big"): 4.0}
#: member → format → status; "big" has no export records at all.
STATUSES = {  # (status, exported)
    "tiny": {"onnx": ("passed", True), "coreml": ("unavailable", True),
             "tensorrt": ("unavailable", False)},
    "mid": {"onnx": ("failed", True), "tensorrt": ("failed", False)},
}  # fmt: skip


def _arch(i: int, variant: int = 0) -> dict[str, Any]:
    return {"resolution": 24 + 4 * i, "d": [2 + i, 2], "ks": [[3, 5 + 2 * variant]], "e": [[3, 4]]}


def _parity(ok: bool) -> dict[str, float | int | None]:
    worst = 3.1e-6 if ok else 0.02
    return {
        "n": 64,
        "top1_reference": 0.9,
        "top1_artifact": 0.9 if ok else 0.89,
        "top1_agreement": 1.0 if ok else 0.984375,
        "negative_flips": 0 if ok else 1,
        "positive_flips": 0,
        "max_abs": worst,
        "mean_abs": 1e-6,
        "p99_abs": worst,
        "max_rel": worst,
        "mean_rel": 1e-6,
        "p99_rel": worst,
        "min_atol": worst,
    }


def _artifact(fmt: str, outcome: tuple[str, bool]) -> dict[str, Any]:
    status, exported = outcome
    ran = exported and status != "unavailable"
    return {
        "format": fmt,
        "path": f"model.{fmt}" if exported else None,
        "sha256": "ab" * 32 if exported else None,
        "size": 1234 if exported else None,
        "status": status,
        "parity": _parity(status == "passed") if ran else None,
        "precision": "fp32",
        "policy": {"fail": {"atol": 1e-4}},
        "seconds": 1.25,
        "detail": f"<b>{status}</b> detail",
    }


#: (search NFR, search Top-1) of each searched member's front, lowest NFR first; the first point
#: is the R1 paragon, the last the R0 paragon, the middle one chosen.
FRONT = [(0.5, 80.0), (1.0, 82.0), (2.0, 83.0)]
FT_BEFORE_NFR = {("tiny", "mid"): 1.5, ("tiny", "big"): 1.25, ("mid", "big"): 3.0}


def _front(i: int) -> dict[str, Any]:
    points = [
        {"arch": _arch(i), "top1": t + i, "nfr": n, "cost": 1.0 + i, "generation": g}
        for g, (n, t) in enumerate(FRONT)
    ]
    return {"selection": "epsilon", "evaluated": 5, "front": points, "top1_paragon": points[-1],
            "nfr_paragon": points[0], "chosen": points[1]}  # fmt: skip


def _member(i: int, name: str, top1: float, extras: bool, variant: int = 0) -> MemberRecord:
    latency: dict[str, Any] = {"predicted": 1.0 + i, "budget": 1.5 + i, "tolerance_pct": 10.0}
    if extras:
        measured = 1.1 + 1.05 * i
        latency |= {"measured": measured, "measured_p90": measured + 0.2, "calls": 500,
                    "error_pct": round(100 * (latency["predicted"] - measured) / measured, 2),
                    "measured_on": "ort-cpu, 1 thread(s), model.onnx, batch 1"}  # fmt: skip
    more: dict[str, Any] = {"budget": {"latency_ms": 1.5 + i}}
    if i and not variant:  # searched against the member below
        more["search_front"] = _front(i)
    if extras and name in STATUSES:
        more["artifacts"] = {f: _artifact(f, s) for f, s in STATUSES[name].items()}
    return MemberRecord(
        name=name,
        target="cpu",
        arch=_arch(i, variant),
        contains=NAMES[i - 1] if i else None,
        top1=top1,
        search_top1=top1 + 0.5,
        latency_ms=LatencyMs(**latency),
        flops=(i + 1) * 12_345_678,
        params=(i + 1) * 234_567,
        path=f"members/{name}",
        **more,
    )


def _pairs(nfr: dict[tuple[str, str], float]) -> list[PairRecord]:
    return [
        PairRecord(ref=r, target=t, nfr=v, pfr=1.0, rel_nfr=0.3, nfi=0.1)
        for (r, t), v in nfr.items()
    ]


def _release(root: Path, extras: bool = True) -> FamilyManifest:
    """A 3-member release; ``extras`` adds baseline, artifacts, measured latency and gates."""
    members = [_member(i, n, TOP1[n], extras) for i, n in enumerate(NAMES)]
    baseline = None
    summary: dict[str, Any] = {
        "family": {"mean_top1": 85.203, "mean_pairwise_nfr": 1.5366},
        "build_seconds": 12.5,
        "evaluations": {"run": 40, "cache_hits": 2},
    }
    more: dict[str, Any] = {}
    if extras:
        b_members = [_member(i, n, BASE_TOP1[n], False, 1) for i, n in enumerate(NAMES)]
        baseline = FamilyBlock(members=b_members, pairwise=_pairs(BASE_NFR))
        summary |= {
            "baseline": {"mean_top1": 85.733, "mean_pairwise_nfr": 3.1167},
            "nfr_reduction_pct": 50.7,
            "top1_cost": 0.53,
        }
        more["gates"] = [
            {"name": "parity", "passed": False, "detail": "mid onnx"},
            {"name": "nfr_reduction", "passed": True, "detail": "50.7 % ≥ 20 %"},
        ]
        more["finetune"] = {
            "method": "fd-kd", "epochs": 2, "lr": 0.005, "alpha": 1.0, "beta": 5.0,
            "temperature": 1.0, "batch_size": 256, "images": None, "train_images": 50000,
            "seconds": 321.0, "weights_shared": False,
            "members": [
                {"name": n, "reference": NAMES[i - 1] if i else None, "top1_before": TOP1[n] - i,
                 "top1_after": TOP1[n], "nfr_before": FT_BEFORE_NFR.get((NAMES[i - 1], n)),
                 "nfr_after": NFR.get((NAMES[i - 1], n))}
                for i, n in enumerate(NAMES)
            ],
            "pairwise_before": _pairs(FT_BEFORE_NFR),
            "summary_before": {"mean_top1": 84.2, "mean_pairwise_nfr": 1.9167},
        }  # fmt: skip
    manifest = FamilyManifest.model_validate(
        {
            "famc_version": "0.1.0",
            "created": "2025-01-02T03:04:05+00:00",
            "space": "mbv3-tiny",
            "preprocessing": {
                "channels": 1,
                "mean": [0.5],
                "std": [0.25],
                "resolution": {n: 24 for n in NAMES},
                "class_names": ["a", "b"],
            },
            "members": members,
            "pairwise": _pairs(NFR),
            "baseline": baseline,
            "summary": summary,
            "search": {"population": 8, "evaluation": {}, "search_images": 100, "calib_images": 50},
            "inputs": {
                "config": "family.yaml",
                "config_sha256": "c0" * 32,
                "supernet": "supernet.safetensors",
                "supernet_sha256": "5e" * 32,
                "data": "fashion-mnist",
                "data_fingerprint": "da" * 32,
                "tables": {"tables/cpu.json": "7a" * 32},
                "targets": {n: "cpu.yaml" for n in NAMES},
            },
            "environment": {
                "famc": "0.1.0",
                "python": "3.11.7",
                "torch": "2.13.0",
                "onnx": "1.23",
                "onnxruntime": "1.32",
                "coremltools": None,
                "tensorrt": None,
                "cpu": "test CPU",
                "cores": 2,
                "torch_threads": 2,
                "thread_env": {},
            },
            **more,
        }
    )
    root.mkdir(parents=True, exist_ok=True)
    (root / "family.json").write_text(manifest.model_dump_json(indent=2))
    families = ("reg-nas", "baseline") if extras else ("reg-nas",)
    lines = []
    for fam in families:
        for i, name in enumerate(NAMES):
            for k in range(5):  # k == 0 is the architecture the member ended up with
                arch = _arch(i, fam == "baseline") if k == 0 else {**_arch(i), "d": [k, 9]}
                lines.append(
                    {
                        "family": fam,
                        "member": name,
                        "arch": arch,
                        "cost": 0.5 + i + k / 10,
                        "top1": 70.0 + k + i,
                        "nfr": 0.4 + k / 2 if fam == "reg-nas" and i else None,
                        "partial": fam == "reg-nas" and k == 4,  # stopped by racing
                        "reward": 70.0,
                        "generation": k,
                    }
                )
    (root / "trace.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return manifest


def _section(text: str, heading: str) -> str:
    """The text from ``heading`` up to the next heading of the same level."""
    start = text.index(heading) + len(heading)
    nxt = re.search(r"<h2>" if heading.startswith("<h2>") else r"\n## ", text[start:])
    return text[start : start + nxt.start()] if nxt else text[start:]


def _html_rows(html: str, heading: str) -> list[list[str]]:
    """Cell texts (a status badge reads as its word)."""
    body = _section(html, heading).split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    rows = [re.findall(r"<td>(.*?)</td>", row) for row in re.findall(r"<tr>(.*?)</tr>", body)]
    return [[re.sub(r'<span class="badge b-\w+">(\w+)</span>', r"\1", c) for c in r] for r in rows]


def _md_rows(md: str, heading: str) -> list[list[str]]:
    """Body rows of the first table under ``heading`` (header and separator dropped)."""
    blocks = (b.strip() for b in _section(md, heading).split("\n\n"))
    rows = next(b for b in blocks if b.startswith("|")).splitlines()
    return [[c.strip() for c in row.strip("|").split("|")] for row in rows[2:]]


def _heatmap_cells(svg: str) -> dict[tuple[str, str], str]:
    cells = re.findall(
        r'<g class="cell" data-ref="(.*?)" data-target="(.*?)">.*?'
        r"<text[^>]*>(.*?)</text></g>",
        svg,
    )
    return {(r, t): v for r, t, v in cells}


@pytest.fixture
def full(tmp_path: Path) -> tuple[FamilyManifest, str, str]:
    manifest = _release(tmp_path / "rel")
    html_path, md_path = write_report(tmp_path / "rel")
    assert (html_path, md_path) == (tmp_path / "rel/report.html", tmp_path / "rel/report.md")
    return manifest, html_path.read_text(), md_path.read_text()


def test_html_is_self_contained_with_one_svg_per_chart(full) -> None:
    _, html, _ = full
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:[a-z]+:)?//""", html, re.I)
    assert not re.search(r"<script|<link|<img|<iframe|@import|url\(", html, re.I)
    # 3 heatmaps (REG-NAS, baseline, before fine-tuning) + overview + one search scatter per
    # member + one Top-1/NFR chart per member with a member below + latency
    assert html.count("<svg") == 3 + 1 + len(NAMES) + (len(NAMES) - 1) + 1
    assert html.count('<svg class="heatmap"') == 3
    assert "y = x" in _section(html, "<h2>Latency: predicted vs measured</h2>")
    header = html.split("<h2>Members</h2>")[0]
    for text in ("mbv3-tiny", "famc 0.1.0", "2025-01-02T03:04:05+00:00", "c0" * 32, "7a" * 32):
        assert text in header


def test_heatmap_cells_equal_pairwise_nfr(full) -> None:
    _, html, md = full
    svgs = html.split('<svg class="heatmap"')[1:]
    for svg, nfr in zip(svgs, (NFR, BASE_NFR, FT_BEFORE_NFR), strict=True):
        cells = _heatmap_cells(svg.split("</svg>")[0])
        # one cell per smaller→larger pair, written with the value the matrix table shows
        assert cells == {pair: f"{value:.2f}" for pair, value in nfr.items()}
    for heading, nfr in (("### REG-NAS", NFR), ("### Baseline\n", BASE_NFR)):
        rows = {r[0]: r[1:] for r in _md_rows(md, heading)}
        assert rows == {
            ref: [f"{nfr[ref, t]:.2f}" if (ref, t) in nfr else "" for t in NAMES[1:]]
            for ref in NAMES[:-1]
        }


def test_members_and_summary_in_both_reports(full) -> None:
    manifest, html, md = full
    md_rows = _md_rows(md, "## Members")
    assert [r[0] for r in md_rows] == list(NAMES)
    assert [r[0] for r in _html_rows(html, "<h2>Members</h2>")] == list(NAMES)
    for m in manifest.members:
        for text in (m.name, f"{m.top1:.2f}", f"{m.search_top1:.2f}", f"{m.flops / 1e6:.1f}"):
            assert text in html and text in md
    measured = {r[0]: r[9] for r in md_rows}  # column after budget, present because measured
    assert measured == {m.name: f"{m.latency_ms.measured:.3f}" for m in manifest.members}
    for text in ("50.70", "0.530", "3.117", "1.537"):
        assert text in _section(html, "<h2>Consistency") and text in md


def test_export_statuses_and_parity(full) -> None:
    _, html, md = full
    for rows in (_html_rows(html, "<h2>Export</h2>"), _md_rows(md, "## Export")):
        by_key = {(r[0], r[1]): r for r in rows}
        assert len(rows) == sum(map(len, STATUSES.values())) + 1
        for member, formats in STATUSES.items():
            for fmt, (status, exported) in formats.items():
                row = by_key[member, fmt]
                assert row[2] == status
                assert row[6] == ("ab" * 6 if exported else "–")
        assert by_key["tiny", "onnx"][3:6] == ["1.0000", "3.1e-06", "3.1e-06"]
        assert by_key["mid", "onnx"][2:6] == ["failed", "0.9844", "0.02", "0.02"]
        assert by_key["big", "–"][2] == NOT_EXPORTED
    assert '<span class="badge b-failed">failed</span>' in html  # a text badge, not an emoji
    assert not re.search("[\u2600-\u27bf\U0001f300-\U0001faff]", html + md)
    assert "&lt;b&gt;passed&lt;/b&gt;" in html and "<b>passed" not in html  # escaped
    assert "&lt;b>passed&lt;/b> detail" in md and "<b>" not in md


def test_gates_in_both_reports(full) -> None:
    _, html, md = full
    expected = [
        ["parity", "failed", "mid onnx"],
        ["nfr_reduction", "passed", "50.7 % ≥ 20 %"],
    ]
    assert _md_rows(md, "## Gates") == expected
    assert _html_rows(html, "<h2>Gates</h2>") == expected


def test_latency_section_shows_prediction_error_and_what_was_timed(full) -> None:
    manifest, html, md = full
    for rows in (_html_rows(html, "<h2>Latency"), _md_rows(md, "## Latency")):
        by_name = {r[0]: r for r in rows}
        for m in manifest.members:
            lat = m.latency_ms
            assert by_name[m.name][1:7] == [f"{lat.predicted:.3f}", f"{lat.measured:.3f}",
                                            f"{lat.measured_p90:.3f}", f"{lat.error_pct:+.1f}",
                                            "±10", lat.measured_on]  # fmt: skip


def test_latency_gates_budget_and_table_error() -> None:
    def member(measured: float, predicted: float) -> MemberRecord:
        m = _member(0, "tiny", 80.0, extras=True)
        error = round(100 * (predicted - measured) / measured, 2)
        lat = m.latency_ms.model_copy(update={"measured": measured, "predicted": predicted,
                                              "budget": 1.0, "error_pct": error})  # fmt: skip
        return m.model_copy(update={"latency_ms": lat})

    def verdicts(m: MemberRecord, **gates: Any) -> dict[str, bool]:
        return {g.name: g.passed for g in check_gates([m], [], GatesConfig(**gates))
                if g.name.startswith("latency")}  # fmt: skip

    assert verdicts(member(1.09, 1.0)) == {"latency_within_budget[tiny]": True,
                                           "latency_table_error[tiny]": True}  # fmt: skip
    assert verdicts(member(1.11, 1.0)) == {"latency_within_budget[tiny]": False,
                                           "latency_table_error[tiny]": True}  # fmt: skip
    assert verdicts(member(0.8, 0.95)) == {"latency_within_budget[tiny]": True,
                                           "latency_table_error[tiny]": False}  # fmt: skip
    assert verdicts(member(1.5, 1.0), latency_within_budget=False, latency_table_error=False) == {}


def test_optional_blocks_absent_render_and_say_so(tmp_path: Path) -> None:
    _release(tmp_path, extras=False)
    html_path, md_path = write_report(tmp_path)
    html, md = html_path.read_text(), md_path.read_text()
    # one heatmap, overview, per-member search, Top-1/NFR of the members with one below
    assert html.count("<svg") == 1 + 1 + len(NAMES) + len(NAMES) - 1
    for text in (NO_BASELINE, NO_MEASURED, NO_GATES, NO_FINETUNE):
        assert text in md
        assert text.replace("`", "") in html.replace("`", "")
    for rows in (_html_rows(html, "<h2>Export</h2>"), _md_rows(md, "## Export")):
        assert [(r[0], r[2]) for r in rows] == [(n, NOT_EXPORTED) for n in NAMES]
    assert len(_md_rows(md, "## Members")) == len(NAMES)
    assert "measured latency" not in html and "measured latency" not in md
    (tmp_path / "trace.jsonl").unlink()  # older releases: overview only, and a note why
    html = write_report(tmp_path)[0].read_text()
    assert "No trace.jsonl in this release" in html
    # heatmap, overview and the fronts (family.json holds them), with no evaluated cloud
    assert html.count("<svg") == 2 + len(NAMES) - 1 and ">evaluated</text>" not in html


def test_front_chart_marks_front_paragons_and_chosen(full) -> None:
    manifest, html, md = full
    section = _section(html, "<h2>Search: Top-1 vs NFR</h2>")
    charts = section.split('<svg class="scatter"')[1:]
    assert len(charts) == len(NAMES) - 1
    for i, chart in enumerate(charts, 1):
        for label in ("evaluated", "front", "R0", "R1", "chosen"):
            assert f">{label}</text>" in chart
        for marker in (f"R0 paragon {NAMES[i]}", f"R1 paragon {NAMES[i]}", f"chosen {NAMES[i]}"):
            assert f"<title>{marker}</title>" in chart
        assert chart.count("<polyline") == 1  # the front, joined lowest NFR first
        # legend, the 4 fully evaluated (the raced one is left out), front, markers
        assert chart.count("<circle") == 5 + 4 + 3 + 3
    for rows in (_html_rows(section, ""), _md_rows(md, "## Search: Top-1 vs NFR")):
        assert [r[:2] for r in rows] == [[n, "epsilon"] for n in NAMES[1:]]
        assert [r[4:] for r in rows] == [
            [f"{t + i:.2f} / {n:.2f}" for n, t in (FRONT[1], FRONT[2], FRONT[0])]
            for i in range(1, len(NAMES))
        ]


def test_finetune_before_after_and_the_sharing_statement(full) -> None:
    manifest, html, md = full
    assert NOT_SHARED in md and NOT_SHARED in html
    for rows in (_html_rows(html, "<h2>Fine-tuning</h2>"), _md_rows(md, "## Fine-tuning")):
        by_name = {r[0]: r for r in rows}
        assert by_name["tiny"][1:4] == ["–", f"{TOP1['tiny']:.2f}", f"{TOP1['tiny']:.2f}"]
        assert by_name["big"][1:] == ["mid", f"{TOP1['big'] - 2:.2f}", f"{TOP1['big']:.2f}",
                                      "3.00", "2.50"]  # fmt: skip
        assert by_name["family mean (NFR: all pairs)"][4:] == ["1.917", "1.537"]
    before = {r[0]: r[1:] for r in _md_rows(md, "### Pairwise NFR before fine-tuning")}
    assert before == {"tiny": ["1.50", "1.25"], "mid": ["", "3.00"]}


def test_missing_or_broken_inputs_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FamcError, match=re.escape(str(tmp_path / "family.json"))):
        write_report(tmp_path)
    (tmp_path / "family.json").write_text('{"members": []}')
    with pytest.raises(FamcError, match="not a valid family.json"):
        write_report(tmp_path)
    _release(tmp_path)
    with (tmp_path / "trace.jsonl").open("a") as fh:
        fh.write("{not json\n")
    with pytest.raises(FamcError, match=re.escape(f"{tmp_path / 'trace.jsonl'}:31")):
        write_report(tmp_path)
    assert not (tmp_path / "report.html").exists()
