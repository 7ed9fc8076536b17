"""Two tiny inline-SVG chart kinds (heatmap, scatter), so ``report.html`` stays one self-contained
file that opens offline and in CI artifact viewers — no JS, fonts or plotting libraries."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from html import escape

FONT = 'font-family="system-ui,sans-serif" font-size="11"'


@dataclass(frozen=True)
class Series:
    """Points ``(x, y, label)``; ``line`` joins them in order, ``show_labels`` writes the labels."""

    name: str
    points: Sequence[tuple[float, float, str]]
    color: str
    radius: float = 3.0
    opacity: float = 1.0
    line: bool = False
    show_labels: bool = False


def _domain(values: Sequence[float]) -> tuple[float, float]:
    """Data range padded by 5 % (or ±0.5 for a single value) so no point sits on the frame."""
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.05 or max(abs(lo) * 0.05, 0.5)
    return lo - pad, hi + pad


def _ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round-numbered ticks (1/2/5 × 10^k steps) inside ``[lo, hi]``."""
    raw = (hi - lo) / count
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 5, 10) if raw <= step * m)
    first = math.ceil(lo / step)
    return [round(i * step, 12) for i in range(first, math.floor(hi / step) + 1)]


@dataclass(frozen=True)
class _Frame:
    """Data domain → pixel mapping of one plot area."""

    x0: float
    x1: float
    y0: float
    y1: float
    left: int = 52
    top: int = 26
    pw: int = 294
    ph: int = 194

    def sx(self, x: float) -> float:
        return self.left + (x - self.x0) / (self.x1 - self.x0) * self.pw

    def sy(self, y: float) -> float:
        return self.top + (1 - (y - self.y0) / (self.y1 - self.y0)) * self.ph


def _axes(f: _Frame, x_label: str, y_label: str, height: int) -> list[str]:
    out = [f'<rect x="{f.left}" y="{f.top}" width="{f.pw}" height="{f.ph}" fill="none" '
           'stroke="#d0d7de"/>']  # fmt: skip
    bottom = f.top + f.ph
    for t in _ticks(f.x0, f.x1):
        out.append(
            f'<line x1="{f.sx(t):.1f}" x2="{f.sx(t):.1f}" y1="{bottom}" y2="{bottom + 4}" '
            f'stroke="#57606a"/><text x="{f.sx(t):.1f}" y="{bottom + 15}" '
            f'text-anchor="middle">{t:g}</text>'
        )
    for t in _ticks(f.y0, f.y1):
        out.append(
            f'<line x1="{f.left - 4}" x2="{f.left}" y1="{f.sy(t):.1f}" y2="{f.sy(t):.1f}" '
            f'stroke="#57606a"/><text x="{f.left - 6}" y="{f.sy(t) + 4:.1f}" '
            f'text-anchor="end">{t:g}</text>'
        )
    out.append(f'<text x="{f.left + f.pw / 2}" y="{height - 6}" text-anchor="middle">'
               f"{escape(x_label)}</text>")  # fmt: skip
    out.append(
        f'<text transform="translate(12 {f.top + f.ph / 2}) rotate(-90)" text-anchor="middle">'
        f"{escape(y_label)}</text>"
    )
    return out


def _points(f: _Frame, s: Series) -> list[str]:
    out = []
    if s.line and len(s.points) > 1:
        path = " ".join(f"{f.sx(x):.1f},{f.sy(y):.1f}" for x, y, _ in s.points)
        out.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="1.5"/>')
    for x, y, label in s.points:
        tip = f"<title>{escape(label)}</title>" if label else ""
        out.append(
            f'<circle cx="{f.sx(x):.1f}" cy="{f.sy(y):.1f}" r="{s.radius}" fill="{s.color}" '
            f'fill-opacity="{s.opacity}">{tip}</circle>'
        )
        if s.show_labels:  # labels near the right edge go left of their point, not off-canvas
            right_side = f.sx(x) > f.left + 0.8 * f.pw
            anchor = 'text-anchor="end" ' if right_side else ""
            lx = f.sx(x) - 6 if right_side else f.sx(x) + 6
            out.append(f'<text {anchor}x="{lx:.1f}" y="{f.sy(y) - 5:.1f}">{escape(label)}</text>')
    return out


def scatter(
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    width: int = 360,
    height: int = 260,
) -> str:
    """A scatter plot with axes, ticks and a legend; ``diagonal`` adds y = x on a shared scale."""
    xs = [p[0] for s in series for p in s.points]
    ys = [p[1] for s in series for p in s.points]
    if diagonal:
        xs = ys = xs + ys
    (x0, x1), (y0, y1) = _domain(xs), _domain(ys)
    f = _Frame(x0, x1, y0, y1, pw=width - 52 - 14, ph=height - 26 - 40)
    out = [
        f'<svg class="scatter" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
        f'{FONT} role="img" aria-label="{escape(f"{y_label} vs {x_label}")}">',
        *_axes(f, x_label, y_label, height),
    ]
    if diagonal:
        lo, hi = max(x0, y0), min(x1, y1)
        out.append(
            f'<line x1="{f.sx(lo):.1f}" y1="{f.sy(lo):.1f}" x2="{f.sx(hi):.1f}" y2="{f.sy(hi):.1f}" '
            'stroke="#8c959f" stroke-dasharray="4 3"><title>y = x</title></line>'
        )
    legend_x = f.left
    for s in series:
        out.append(
            f'<circle cx="{legend_x + 4}" cy="11" r="4" fill="{s.color}"/>'
            f'<text x="{legend_x + 11}" y="15">{escape(s.name)}</text>'
        )
        legend_x += 24 + 6 * len(s.name)
        out += _points(f, s)
    out.append("</svg>")
    return "\n".join(out)


def _cell_color(t: float) -> str:
    """White at 0 to dark red at 1, so a worse (higher) NFR reads as a hotter cell."""
    lo, hi = (255, 255, 255), (178, 24, 43)
    r, g, b = (round(a + (z - a) * t) for a, z in zip(lo, hi, strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def heatmap(
    rows: Sequence[str], cols: Sequence[str], values: Mapping[tuple[str, str], float], vmax: float
) -> str:
    """Grid of ``values[(row, col)]`` (NFR %), coloured on ``[0, vmax]``; missing pairs stay blank.

    Each cell is a ``<g class="cell" data-ref data-target>`` so tests and scripts can read it back.
    """
    cw, ch = 64, 30
    left = 16 + 7 * max(len(r) for r in rows)
    top = 40
    width, height = left + cw * len(cols) + 10, top + ch * len(rows) + 10
    out = [
        f'<svg class="heatmap" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" {FONT} role="img" aria-label="pairwise NFR (%)">',
        f'<text x="{left}" y="12" fill="#57606a">target (larger) →</text>',
        f'<text x="4" y="{top - 4}" fill="#57606a">ref ↓</text>',
    ]
    for j, col in enumerate(cols):
        out.append(
            f'<text x="{left + cw * j + cw / 2}" y="{top - 8}" text-anchor="middle">'
            f"{escape(col)}</text>"
        )
    for i, row in enumerate(rows):
        y = top + ch * i
        out.append(
            f'<text x="{left - 6}" y="{y + ch / 2 + 4}" text-anchor="end">{escape(row)}</text>'
        )
        for j, col in enumerate(cols):
            if (row, col) not in values:
                continue
            v = values[row, col]
            t = min(v / vmax, 1.0) if vmax > 0 else 0.0
            x = left + cw * j
            ink = "#ffffff" if t > 0.55 else "#1f2328"
            out.append(
                f'<g class="cell" data-ref="{escape(row)}" data-target="{escape(col)}">'
                f"<title>{escape(row)} → {escape(col)}: NFR {v:.4g} %</title>"
                f'<rect x="{x}" y="{y}" width="{cw}" height="{ch}" fill="{_cell_color(t)}" '
                f'stroke="#ffffff"/><text x="{x + cw / 2}" y="{y + ch / 2 + 4}" '
                f'text-anchor="middle" fill="{ink}">{v:.2f}</text></g>'
            )
    out.append("</svg>")
    return "\n".join(out)
