"""``report.md``: the report's tables without charts, for CI logs and pull-request comments."""

from __future__ import annotations

from famc.report import tables as T
from famc.report.data import Release


def _cell(text: str) -> str:
    """A pipe or newline would split the row; ``<`` would let a detail string inject HTML into a
    rendered PR comment."""
    return text.replace("|", "\\|").replace("\n", " ").replace("<", "&lt;")


def _table(t: T.Table) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in t.headers) + " |"]
    lines.append("|" + "---|" * len(t.headers))
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines)


def render_markdown(release: Release) -> str:
    m = release.manifest
    gates, latency, update = T.gates_table(m), T.latency_table(m.members), T.update_table(m)
    front, tuned = T.front_table(m.members), T.finetune_table(m)
    baseline_matrix = (
        T.NO_BASELINE
        if m.baseline is None
        else _table(T.nfr_matrix(m.baseline.members, m.baseline.pairwise))
    )
    sections = [
        f"# famc family report: {m.space}",
        f"famc {m.famc_version} · created {m.created} · {len(m.members)} members",
        "## Inputs",
        _table(T.inputs_table(m)),
        "## Members",
        _table(T.members_table(m.members)),
        "### Baseline members",
        T.NO_BASELINE if m.baseline is None else _table(T.members_table(m.baseline.members)),
        "## Pairwise NFR (%)",
        "Rows: reference (smaller) member; columns: target (larger) member; test split.",
        "### REG-NAS",
        _table(T.nfr_matrix(m.members, m.pairwise)),
        "### Baseline",
        baseline_matrix,
        "### Summary",
        _table(T.summary_table(m)),
        "## Search: Top-1 vs NFR",
        T.NO_FRONT if front is None else _table(front),
        "## Fine-tuning",
        *(
            [T.NO_FINETUNE]
            if tuned is None or m.finetune is None
            else [
                f"{T.finetune_settings(m)}. {T.NOT_SHARED}",
                _table(tuned),
                "### Pairwise NFR before fine-tuning (%)",
                _table(T.nfr_matrix(m.members, m.finetune.pairwise_before)),
            ]
        ),
        "## Latency",
        T.NO_MEASURED if latency is None else _table(latency),
        "## Export",
        _table(T.export_table(m.members)),
        "## Update against the previous release",
        T.NO_UPDATE if update is None else _table(update),
        "## Gates",
        T.NO_GATES if gates is None else _table(gates),
        "## Environment",
        _table(T.environment_table(m)),
    ]
    return "\n\n".join(sections) + "\n"
