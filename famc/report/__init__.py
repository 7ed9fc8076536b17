"""Release reports and the build's report stage (``famc.report.stage``).

``report.html`` (self-contained, with inline SVG charts) and ``report.md`` (tables only, for CI logs
and pull requests) are both rendered from the ``family.json`` a build wrote, so a report never shows
numbers the release does not contain.
"""

from __future__ import annotations

from pathlib import Path

from famc.io import write_text

__all__ = ["write_report"]


def write_report(release_dir: Path) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``release_dir`` (each atomically)."""
    from famc.report.data import load_release
    from famc.report.html_page import render_html
    from famc.report.markdown import render_markdown

    release_dir = Path(release_dir)
    release = load_release(release_dir)
    html_path = write_text(release_dir / "report.html", render_html(release))
    md_path = write_text(release_dir / "report.md", render_markdown(release))
    return html_path, md_path
