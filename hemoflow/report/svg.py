"""Small inline SVG plots for the HTML report (no plotting library needed).

- :func:`interval_plot`: one row per proportion, its 95 % interval drawn against the
  reference band or cut-off, each row on its own scale so that 0.5-1 % (basophils) is
  as legible as 40-60 % (neutrophils).
- :func:`histogram_plot`: bar histogram over fixed bin edges.

Both return an ``<svg>`` string with ``role="img"`` and a ``<title>`` for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

__all__ = ["IntervalRow", "interval_plot", "histogram_plot", "FLAG_COLORS", "nice_ceil"]

#: Colour of a flag in plots and badges.
FLAG_COLORS: dict[str, str] = {
    "within": "#2e7d32",
    "below": "#2e7d32",
    "low": "#c62828",
    "high": "#c62828",
    "above": "#c62828",
    "indeterminate": "#ef8f00",
    "not_applicable": "#616161",
    "review": "#c62828",  # blasts in peripheral blood: a person must look
    "none": "#2e7d32",
}


@dataclass(frozen=True)
class IntervalRow:
    """One row of :func:`interval_plot` (values in percent; ``None`` when unknown)."""

    label: str
    percent: float | None
    ci_low: float | None
    ci_high: float | None
    flag: str
    ref_low: float | None = None
    ref_high: float | None = None
    cutoff: float | None = None


def nice_ceil(v: float) -> float:
    """Smallest of 1, 2, 2.5, 5 x 10^k at or above ``v`` (``v > 0``)."""
    if v <= 0 or not math.isfinite(v):
        return 1.0
    e = math.floor(math.log10(v))
    for m in (1.0, 2.0, 2.5, 5.0, 10.0):
        c = m * 10.0**e
        if c >= v * (1 - 1e-12):
            return c
    return 10.0 ** (e + 1)


def _fmt(v: float) -> str:
    return f"{v:g}" if v >= 10 or v == 0 else f"{v:.2g}"


def interval_plot(rows: Sequence[IntervalRow], *, title: str, width: int = 760) -> str:
    """SVG of point estimates with intervals against reference bands / cut-offs."""
    row_h, top, left, right = 46, 30, 120, 210
    height = top + row_h * len(rows) + 10
    plot_w = width - left - right
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="16" fill="#333">Each row on its own scale. Band: reference range; '
        f"dashed line: cut-off; bar: 95 % interval; dot: estimate.</text>",
    ]
    for i, r in enumerate(rows):
        y = top + i * row_h + 18
        vals = [v for v in (r.ci_high, r.ref_high, r.cutoff, r.percent) if v is not None]
        xmax = min(100.0, nice_ceil(max(vals) * 1.15)) if vals and max(vals) > 0 else 1.0

        def sx(v: float, xmax: float = xmax) -> float:
            return left + plot_w * max(0.0, min(v, xmax)) / xmax

        color = FLAG_COLORS.get(r.flag, "#616161")
        out.append(f'<text x="{left - 8}" y="{y + 4}" text-anchor="end" fill="#222">{escape(r.label)}</text>')
        out.append(f'<line x1="{left}" y1="{y + 12}" x2="{left + plot_w}" y2="{y + 12}" stroke="#999"/>')
        for t in (0.0, xmax / 2, xmax):
            tx = sx(t)
            out.append(f'<line x1="{tx:.1f}" y1="{y + 12}" x2="{tx:.1f}" y2="{y + 16}" stroke="#999"/>')
            out.append(
                f'<text x="{tx:.1f}" y="{y + 27}" text-anchor="middle" fill="#666" font-size="10">'
                f"{_fmt(t)} %</text>"
            )
        if r.ref_low is not None and r.ref_high is not None:
            x0, x1 = sx(r.ref_low), sx(r.ref_high)
            out.append(
                f'<rect x="{x0:.1f}" y="{y - 10}" width="{max(x1 - x0, 1.5):.1f}" height="20" '
                f'fill="#c8e6c9" stroke="#81c784"><title>reference {r.ref_low:g}-{r.ref_high:g} %</title></rect>'
            )
        if r.cutoff is not None:
            cx = sx(r.cutoff)
            out.append(
                f'<line x1="{cx:.1f}" y1="{y - 12}" x2="{cx:.1f}" y2="{y + 12}" stroke="#c62828" '
                f'stroke-dasharray="4 3" stroke-width="1.5"><title>cut-off {r.cutoff:g} %</title></line>'
            )
        if r.ci_low is not None and r.ci_high is not None:
            a, b = sx(r.ci_low), sx(r.ci_high)
            out.append(f'<line x1="{a:.1f}" y1="{y}" x2="{b:.1f}" y2="{y}" stroke="{color}" stroke-width="3"/>')
            for e in (a, b):
                out.append(f'<line x1="{e:.1f}" y1="{y - 6}" x2="{e:.1f}" y2="{y + 6}" stroke="{color}" stroke-width="2"/>')
            if r.ci_high > xmax:
                out.append(f'<text x="{left + plot_w + 3}" y="{y + 4}" fill="{color}">›</text>')
        if r.percent is not None:
            out.append(f'<circle cx="{sx(r.percent):.1f}" cy="{y}" r="5" fill="{color}" stroke="#fff"/>')
            est = f"{r.percent:.1f} % ({r.ci_low:.1f}–{r.ci_high:.1f})"
        else:
            est = "no cells"
        out.append(f'<text x="{left + plot_w + 14}" y="{y + 4}" fill="#222">{escape(est)}</text>')
        out.append(
            f'<text x="{left + plot_w + 14}" y="{y + 19}" fill="{color}" font-weight="bold">'
            f"{escape(r.flag.replace('_', ' '))}</text>"
        )
    out.append("</svg>")
    return "".join(out)


def histogram_plot(
    edges: Sequence[float],
    counts: Sequence[int],
    *,
    title: str,
    xlabel: str,
    overflow: int = 0,
    marker: float | None = None,
    marker_label: str = "",
    width: int = 760,
    height: int = 260,
) -> str:
    """SVG bar histogram over ``edges`` (``len(edges) == len(counts) + 1``)."""
    if len(edges) != len(counts) + 1:
        raise ValueError(f"need len(edges) == len(counts) + 1, got {len(edges)} and {len(counts)}")
    left, right, top, bottom = 60, 20, 30, 45
    pw, ph = width - left - right, height - top - bottom
    lo, hi = float(edges[0]), float(edges[-1])
    cmax = max(max(counts, default=0), 1)
    ymax = nice_ceil(cmax)

    def sx(v: float) -> float:
        return left + pw * (v - lo) / (hi - lo)

    def sy(c: float) -> float:
        return top + ph * (1 - c / ymax)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<text x="{left}" y="18" fill="#333">{escape(title)}</text>',
    ]
    for e0, e1, c in zip(edges[:-1], edges[1:], counts):
        if c:
            x0, x1 = sx(float(e0)), sx(float(e1))
            out.append(
                f'<rect x="{x0 + 0.5:.1f}" y="{sy(c):.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
                f'height="{top + ph - sy(c):.1f}" fill="#5c8fd6"><title>{e0:g}-{e1:g}: {c}</title></rect>'
            )
    out.append(f'<line x1="{left}" y1="{top + ph}" x2="{left + pw}" y2="{top + ph}" stroke="#444"/>')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + ph}" stroke="#444"/>')
    step = nice_ceil((hi - lo) / 8)
    t = lo
    while t <= hi + 1e-9:
        out.append(f'<line x1="{sx(t):.1f}" y1="{top + ph}" x2="{sx(t):.1f}" y2="{top + ph + 4}" stroke="#444"/>')
        out.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle" fill="#444">{t:g}</text>')
        t += step
    for c in (0, ymax / 2, ymax):
        out.append(f'<text x="{left - 6}" y="{sy(c) + 4:.1f}" text-anchor="end" fill="#444">{c:g}</text>')
    out.append(
        f'<text x="{left + pw / 2}" y="{height - 6}" text-anchor="middle" fill="#222">{escape(xlabel)}</text>'
    )
    if marker is not None and lo <= marker <= hi:
        mx = sx(marker)
        out.append(f'<line x1="{mx:.1f}" y1="{top}" x2="{mx:.1f}" y2="{top + ph}" stroke="#c62828" stroke-dasharray="4 3"/>')
        out.append(f'<text x="{mx + 4:.1f}" y="{top + 12}" fill="#c62828">{escape(marker_label)}</text>')
    if overflow:
        out.append(
            f'<text x="{left + pw}" y="{top + 12}" text-anchor="end" fill="#444">'
            f"{overflow} above {hi:g}</text>"
        )
    out.append("</svg>")
    return "".join(out)
