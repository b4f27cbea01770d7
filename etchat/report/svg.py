"""Small self-contained SVG charts (grouped bars, lines) for the report: no plotting library needed.

Charts scale to their container (viewBox), use a fixed palette, and escape every text they draw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#3b6ea8", "#e08a2c", "#4e9a55", "#c44e52", "#8172b3", "#937860", "#da8bc3", "#8c8c8c")
FONT = 'font-family="sans-serif"'


def _nice_max(value: float) -> float:
    """A round axis maximum at or above `value` (1, 2, 2.5 or 5 times a power of ten)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


def _fmt(value: float) -> str:
    return f"{value:g}" if abs(value) >= 0.01 or value == 0 else f"{value:.1e}"


def _frame(width: int, height: int, title: str) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="100%" role="img">',
        f"<title>{escape(title)}</title>",
        f'<text x="{width / 2}" y="18" text-anchor="middle" font-size="14" font-weight="bold" {FONT}>'
        f"{escape(title)}</text>",
    ]


def _legend(names: Sequence[str], x: float, y: float) -> list[str]:
    parts = []
    for i, name in enumerate(names):
        colour = PALETTE[i % len(PALETTE)]
        parts.append(f'<rect x="{x}" y="{y + i * 16}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{x + 14}" y="{y + i * 16 + 9}" font-size="11" {FONT}>{escape(name)}</text>')
    return parts


def _y_axis(left: float, top: float, plot_h: float, right: float, y_max: float, label: str) -> list[str]:
    parts = []
    for k in range(6):
        value = y_max * k / 5
        y = top + plot_h - plot_h * k / 5
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{right}" y2="{y:.1f}" stroke="#ddd"/>')
        parts.append(
            f'<text x="{left - 4}" y="{y + 4:.1f}" text-anchor="end" font-size="10" {FONT}>{_fmt(value)}</text>'
        )
    parts.append(
        f'<text transform="translate(12,{top + plot_h / 2:.1f}) rotate(-90)" text-anchor="middle" '
        f'font-size="11" {FONT}>{escape(label)}</text>'
    )
    return parts


def bar_chart(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float | None]],
    title: str,
    y_label: str = "",
    width: int = 760,
    height: int = 320,
) -> str:
    """Grouped vertical bars: one group per category, one bar per series; None leaves a gap."""
    values = [v for vs in series.values() for v in vs if v is not None and math.isfinite(v)]
    y_max = _nice_max(max(values, default=1.0))
    left, right, top, bottom = 52, width - 130, 30, height - 58
    plot_h = bottom - top
    parts = _frame(width, height, title) + _y_axis(left, top, plot_h, right, y_max, y_label)
    group_w = (right - left) / max(1, len(categories))
    bar_w = group_w * 0.8 / max(1, len(series))
    for c, category in enumerate(categories):
        x0 = left + c * group_w + group_w * 0.1
        for s, (name, vs) in enumerate(series.items()):
            v = vs[c]
            if v is None or not math.isfinite(v):
                continue
            h = plot_h * max(0.0, v) / y_max
            parts.append(
                f'<rect x="{x0 + s * bar_w:.1f}" y="{bottom - h:.1f}" width="{bar_w * 0.92:.1f}" height="{h:.1f}" '
                f'fill="{PALETTE[s % len(PALETTE)]}"><title>{escape(name)} {escape(category)}: {_fmt(v)}</title></rect>'
            )
        cx = left + (c + 0.5) * group_w
        parts.append(
            f'<text transform="translate({cx:.1f},{bottom + 12}) rotate(35)" font-size="10" {FONT}>'
            f"{escape(category)}</text>"
        )
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>')
    parts += _legend(list(series), right + 12, top + 4)
    parts.append("</svg>")
    return "\n".join(parts)


def line_chart(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    x_label: str = "",
    y_label: str = "",
    width: int = 760,
    height: int = 300,
) -> str:
    """Lines through (x, y) points, one per series, on shared axes starting at zero."""
    xs = [x for pts in series.values() for x in pts[0]]
    ys = [y for pts in series.values() for y in pts[1] if math.isfinite(y)]
    x_max, y_max = _nice_max(max(xs, default=1.0)), _nice_max(max(ys, default=1.0))
    left, right, top, bottom = 52, width - 130, 30, height - 40
    plot_w, plot_h = right - left, bottom - top
    parts = _frame(width, height, title) + _y_axis(left, top, plot_h, right, y_max, y_label)
    for k in range(6):
        x = left + plot_w * k / 5
        label = _fmt(x_max * k / 5)
        parts.append(f'<text x="{x:.1f}" y="{bottom + 14}" text-anchor="middle" font-size="10" {FONT}>{label}</text>')
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle" font-size="11" {FONT}>'
        f"{escape(x_label)}</text>"
    )
    for s, (name, (px, py)) in enumerate(series.items()):
        points = [
            f"{left + plot_w * x / x_max:.1f},{bottom - plot_h * max(0.0, y) / y_max:.1f}"
            for x, y in zip(px, py, strict=True)
            if math.isfinite(y)
        ]
        if points:
            parts.append(
                f'<polyline fill="none" stroke="{PALETTE[s % len(PALETTE)]}" stroke-width="1.5" '
                f'points="{" ".join(points)}"><title>{escape(name)}</title></polyline>'
            )
    parts.append(f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#333"/>')
    parts += _legend(list(series), right + 12, top + 4)
    parts.append("</svg>")
    return "\n".join(parts)
