"""``report.html``: one self-contained page (inline CSS and SVG only) a reviewer can open offline."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

from famc.cost import COST_MODELS
from famc.metrics import Pair
from famc.report import tables as T
from famc.report.data import Release, TracePoint, budget_kind
from famc.report.release import MemberRecord
from famc.report.svg import Series, heatmap, scatter

REGNAS_COLOR, BASELINE_COLOR, TRACE_COLOR = "#1f6feb", "#d9822b", "#8c959f"
FRONT_COLOR, R0_COLOR, R1_COLOR = "#1a7f37", "#8250df", "#bf3989"
CSS = """
body{font:14px/1.45 system-ui,sans-serif;color:#1f2328;max-width:1200px;margin:2rem auto;
padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;
border-bottom:1px solid #d0d7de}h3{font-size:1rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:13px;
font-variant-numeric:tabular-nums}
th,td{border:1px solid #d0d7de;padding:3px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}.meta{color:#57606a;margin-top:0}.note{color:#57606a;font-style:italic}
.charts{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
figure{margin:0}figcaption{font-size:12px;color:#57606a;max-width:360px}
code{font-size:12px}
.badge{display:inline-block;padding:0 7px;border-radius:9px;font-weight:600;font-size:12px}
.b-passed{background:#dafbe1;color:#116329}.b-failed{background:#ffebe9;color:#a40e26}
.b-unavailable{background:#fff8c5;color:#7d4e00}
"""


def _cell(t: T.Table, column: int, text: str) -> str:
    if column == t.badge_column and text in T.STATUS_WORDS:
        return f'<td><span class="badge b-{text}">{escape(text)}</span></td>'
    return f"<td>{escape(text)}</td>"


def _table(t: T.Table) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in t.headers)
    body = "".join(
        "<tr>" + "".join(_cell(t, i, c) for i, c in enumerate(row)) + "</tr>" for row in t.rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"


def _heatmaps(release: Release) -> str:
    """Side-by-side NFR grids on one colour scale, so the two families compare at a glance."""
    m = release.manifest
    families: list[tuple[str, Sequence[MemberRecord], Sequence[Pair]]] = [
        ("REG-NAS", m.members, m.pairwise)
    ]
    if m.baseline is not None:
        families.append(("baseline", m.baseline.members, m.baseline.pairwise))
    if m.finetune is not None:
        families.append(("REG-NAS before fine-tuning", m.members, m.finetune.pairwise_before))
    if len(m.members) < 2:
        return _note("A single-member family has no pairs to compare.")
    vmax = max((p.nfr for _, _, pairs in families for p in pairs), default=0.0)
    figures = []
    for label, members, pairs in families:
        names = [x.name for x in members]
        values = {(p.ref, p.target): p.nfr for p in pairs}
        figures.append(
            _figure(
                heatmap(names[:-1], names[1:], values, vmax),
                f"{label}: NFR (%) of each smaller→larger pair, test split; "
                f"colour from 0 (white) to {vmax:.2f} % (dark red), shared by all grids",
            )
        )
    return f'<div class="charts">{"".join(figures)}</div>'


def _search_charts(release: Release) -> str:
    """An overview on FLOPs (a unit every member shares) plus one search scatter per member, since
    members may be searched under different cost models whose units must not share an axis."""
    m = release.manifest
    overview = [
        Series(
            "REG-NAS",
            [(x.flops / 1e6, x.top1, x.name) for x in m.members],
            REGNAS_COLOR,
            radius=4.5,
            line=True,
            show_labels=True,
        )
    ]
    if m.baseline is not None:
        overview.append(
            Series(
                "baseline",
                [(x.flops / 1e6, x.top1, x.name) for x in m.baseline.members],
                BASELINE_COLOR,
                radius=4,
                line=True,
            )
        )
    figures = [
        _figure(
            scatter(overview, x_label="FLOPs (M)", y_label="Top-1 test (%)"),
            "Members of each family, smallest first, on the test split.",
        )
    ]
    if release.trace is None:
        return f'<div class="charts">{"".join(figures)}</div>' + _note(
            "No trace.jsonl in this release: per-member search scatters are not available."
        )
    baseline = {x.name: x for x in m.baseline.members} if m.baseline is not None else {}
    for member in m.members:
        trace = [p for p in release.trace if p.member == member.name]
        if trace:
            figures.append(_member_search(member, baseline.get(member.name), trace))
    return f'<div class="charts">{"".join(figures)}</div>'


def _member_search(member: MemberRecord, baseline: MemberRecord | None,
                   trace: list[TracePoint]) -> str:  # fmt: skip
    """Every architecture evaluated for one member, with the two families' choices marked."""
    series = [Series("evaluated", [(p.cost, p.top1, "") for p in trace], TRACE_COLOR,
                     radius=2.2, opacity=0.45)]  # fmt: skip
    chosen = [
        ("baseline", "baseline", baseline, BASELINE_COLOR),
        ("reg-nas", "REG-NAS", member, REGNAS_COLOR),
    ]
    for fam, label, record, color in chosen:
        if record is None:
            continue
        arch = record.arch.model_dump()
        hit = next((p for p in trace if p.family == fam and p.arch == arch), None)
        if hit is not None:
            series.append(Series(label, [(hit.cost, hit.top1, f"{label} {member.name}")], color,
                                 radius=5))  # fmt: skip
    x_label = COST_MODELS[budget_kind(member)].label
    return _figure(
        scatter(series, x_label=x_label, y_label="search Top-1 (%)"),
        f"{member.name}: {len(trace)} architectures evaluated while searching it "
        f"(both families), on its own cost model.",
    )


def _fronts(release: Release) -> str:
    """Per member searched against the member(s) below: every candidate as search Top-1 vs NFR,
    the Pareto front, both paragons and the chosen one (REG-NAS Fig. 4b)."""
    figures = [_front_chart(m, release.trace) for m in release.manifest.members if m.search_front]
    if not figures:
        return _note(T.NO_FRONT)
    table = T.front_table(release.manifest.members)
    return f'<div class="charts">{"".join(figures)}</div>' + (
        "" if table is None else _table(table)
    )


def _front_chart(member: MemberRecord, trace: list[TracePoint] | None) -> str:
    f = member.search_front
    assert f is not None
    evaluated = [(p.nfr, p.top1, "") for p in trace or [] if p.family == "reg-nas"
                 and p.member == member.name and p.nfr is not None and not p.partial]  # fmt: skip
    series = [Series("evaluated", evaluated, TRACE_COLOR, radius=2.2, opacity=0.45)] * bool(
        evaluated
    )
    series.append(Series("front", [(x.nfr, x.top1, "") for x in f.front], FRONT_COLOR,
                         radius=2.8, line=True))  # fmt: skip
    for name, label, point, color in (("R0", "R0 paragon", f.top1_paragon, R0_COLOR),
                                      ("R1", "R1 paragon", f.nfr_paragon, R1_COLOR),
                                      ("chosen", "chosen", f.chosen, REGNAS_COLOR)):  # fmt: skip
        series.append(Series(name, [(point.nfr, point.top1, f"{label} {member.name}")], color,
                             radius=5))  # fmt: skip
    return _figure(
        scatter(series, x_label="search NFR vs below (%)", y_label="search Top-1 (%)"),
        f"{member.name}: {f.evaluated} fully evaluated candidates under its budget and CAS (search "
        f"split). Line: "
        f"the front; R0: the Top-1 paragon (best Top-1); R1: the NFR paragon (lowest NFR); chosen "
        f"by `{f.selection}`.",
    )


def _finetune(release: Release) -> str:
    table = T.finetune_table(release.manifest)
    if table is None:
        return _note(T.NO_FINETUNE)
    return _note(f"{T.finetune_settings(release.manifest)}. {T.NOT_SHARED}") + _table(table)


def _latency(release: Release) -> str:
    """Predicted vs measured per member, so a latency table that drifted from the device shows."""
    members = release.manifest.members
    table = T.latency_table(members)
    if table is None:
        return _note(T.NO_MEASURED)
    points = [
        (x.latency_ms.predicted, ms, x.name)
        for x in members
        if (ms := x.latency_ms.measured) is not None and x.latency_ms.predicted is not None
    ]
    if points:
        mape = 100 * sum(abs(p - ms) / ms for p, ms, _ in points) / len(points)
        series = [Series("member", points, REGNAS_COLOR, radius=4.5, show_labels=True)]
        svg = scatter(series, x_label="predicted (ms)", y_label="measured (ms)", diagonal=True)
        chart = _figure(svg, f"Dashed: y = x. Mean absolute percentage error {mape:.1f} %.")
    else:
        chart = _note("No member has a predicted latency to compare its measurement with.")
    return chart + _table(table)


def render_html(release: Release) -> str:
    m = release.manifest
    gates, update = T.gates_table(m), T.update_table(m)
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>famc report: {escape(m.space)}</title><style>{CSS}</style></head><body>",
        f"<h1>famc family report: {escape(m.space)}</h1>",
        f'<p class="meta">famc {escape(m.famc_version)} · created {escape(m.created)} · '
        f"{len(m.members)} members</p>",
        "<h2>Inputs</h2>",
        _table(T.inputs_table(m)),
        "<h2>Members</h2>",
        _table(T.members_table(m.members)),
        "<h3>Baseline members</h3>",
        _note(T.NO_BASELINE) if m.baseline is None else _table(T.members_table(m.baseline.members)),
        "<h2>Consistency: pairwise negative flip rate</h2>",
        _table(T.summary_table(m)),
        _heatmaps(release),
        "<h2>Search: Top-1 vs cost</h2>",
        _search_charts(release),
        "<h2>Search: Top-1 vs NFR</h2>",
        _fronts(release),
        "<h2>Fine-tuning</h2>",
        _finetune(release),
        "<h2>Latency: predicted vs measured</h2>",
        _latency(release),
        "<h2>Export</h2>",
        _table(T.export_table(m.members)),
        "<h2>Update against the previous release</h2>",
        _note(T.NO_UPDATE) if update is None else _table(update),
        "<h2>Gates</h2>",
        _note(T.NO_GATES) if gates is None else _table(gates),
        "<h2>Environment</h2>",
        _table(T.environment_table(m)),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
