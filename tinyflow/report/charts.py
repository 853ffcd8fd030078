"""Small, dependency-free SVG charts for the HTML report (inline, so the report needs no network)."""

from __future__ import annotations

from html import escape

_PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7", "#9c755f"]


def _fmt(n: float) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.1f}M"
    if n >= 1000:
        return f"{n / 1e3:.1f}k"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.2f}"


def arena_timeline(buffers: list[dict], head_bytes: int, lower_bound: int, n_ops: int, chart_id: str = "arena",
                   width: int = 760, height: int = 320) -> str:
    """Each planned buffer as a rectangle: x = allocation scope (op), y = offset in the arena; the peak marked."""
    if not buffers or head_bytes <= 0:
        return f'<svg id="{chart_id}" class="chart" width="{width}" height="40"><text x="8" y="24">no planned ' \
               'buffers</text></svg>'
    left, right, top, bottom = 70, 20, 20, 40
    scopes = max(max(b["last"] for b in buffers), n_ops) + 1
    x_unit = (width - left - right) / scopes
    y_scale = (height - top - bottom) / (head_bytes * 1.05)

    def y(offset: float) -> float:
        return height - bottom - offset * y_scale

    parts = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img" aria-label="arena over time">']
    for tick in range(0, 5):
        v = head_bytes * 1.05 * tick / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#ddd"/>'
                     f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end" class="axis">{_fmt(v)}</text>')
    for k, b in enumerate(buffers):
        first = max(b["first"], 0)
        x0 = left + first * x_unit
        w = max((max(b["last"], first) - first + 1) * x_unit - 1, 1)
        colour = "#bab0ac" if b.get("tensor") is None else _PALETTE[k % len(_PALETTE)]
        parts.append(f'<rect class="buffer" x="{x0:.1f}" y="{y(b["offset"] + b["bytes"]):.1f}" width="{w:.1f}" '
                     f'height="{max(b["bytes"] * y_scale, 1):.1f}" fill="{colour}" fill-opacity="0.8" '
                     f'stroke="#fff" stroke-width="0.5"><title>{escape(b["name"])}: {b["bytes"]:,} B at offset '
                     f'{b["offset"]:,}, live ops {b["first"]}..{b["last"]}</title></rect>')
    parts.append(f'<line class="peak" x1="{left}" x2="{width - right}" y1="{y(head_bytes):.1f}" '
                 f'y2="{y(head_bytes):.1f}" stroke="#d62728" stroke-width="2"/>'
                 f'<text x="{width - right}" y="{y(head_bytes) - 5:.1f}" text-anchor="end" fill="#d62728">peak '
                 f'{head_bytes:,} B</text>')
    if 0 < lower_bound < head_bytes:
        parts.append(f'<line class="bound" x1="{left}" x2="{width - right}" y1="{y(lower_bound):.1f}" '
                     f'y2="{y(lower_bound):.1f}" stroke="#555" stroke-dasharray="4 3"/>'
                     f'<text x="{left + 4}" y="{y(lower_bound) - 4:.1f}" fill="#555">most bytes ever live '
                     f'{lower_bound:,} B</text>')
    parts.append(f'<text x="{(left + width - right) / 2:.0f}" y="{height - 8}" text-anchor="middle" class="axis">'
                 f'op (allocation scope)</text></svg>')
    return "".join(parts)


def bars(labels: list[str], values: list[float], chart_id: str, unit: str = "", width: int = 760,
         bar_height: int = 16, colour: str = "#4e79a7", notes: list[str] | None = None) -> str:
    """Horizontal bars, one per label (per-op MACs, bytes, times; accuracies)."""
    left, right = 190, 80
    height = 10 + len(labels) * (bar_height + 4) + 10
    top_value = max([v for v in values if v is not None] + [1e-9])
    parts = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width}" '
             f'height="{height}" role="img">']
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        yy = 10 + i * (bar_height + 4)
        parts.append(f'<text x="{left - 6}" y="{yy + bar_height - 4}" text-anchor="end" class="label">'
                     f'{escape(label)}</text>')
        if v is None:
            parts.append(f'<text x="{left + 4}" y="{yy + bar_height - 4}" class="axis">n/a</text>')
            continue
        w = (width - left - right) * v / top_value
        note = f" {escape(notes[i])}" if notes and notes[i] else ""
        parts.append(f'<rect class="bar" x="{left}" y="{yy}" width="{max(w, 1):.1f}" height="{bar_height}" '
                     f'fill="{colour}"><title>{escape(label)}: {v:,.4g}{unit}</title></rect>'
                     f'<text x="{left + w + 4:.1f}" y="{yy + bar_height - 4}" class="axis">{_fmt(v)}{unit}{note}'
                     f'</text>')
    parts.append("</svg>")
    return "".join(parts)


def patch_grid(patch: dict, chart_id: str = "patch-grid", width: int = 360) -> str:
    """A patched stage on a picture of its input: each cell's input region (with its halo, clipped to the
    image) in its own colour, the cells' seams dashed. The overlaps are the recomputed halo."""
    _, h, w, c = patch["input_shape"]
    height = max(int(width * h / max(w, 1)), 40)
    sx, sy = width / max(w, 1), height / max(h, 1)
    first, last = patch["first_op"], patch["first_op"] + patch["ops"] - 1
    rows, cols = patch["grid"]
    parts = [f'<svg id="{chart_id}" class="chart" xmlns="http://www.w3.org/2000/svg" width="{width + 2}" '
             f'height="{height + 24}" role="img" aria-label="patch grid of ops {first} to {last}">',
             f'<rect x="1" y="1" width="{width}" height="{height}" fill="#f4f4f4" stroke="#333"/>']
    for k, (r0, r1, c0, c1) in enumerate(patch["input_regions"]):
        colour = _PALETTE[k % len(_PALETTE)]
        parts.append(f'<rect class="patch" x="{1 + c0 * sx:.1f}" y="{1 + r0 * sy:.1f}" width="{(c1 - c0) * sx:.1f}" '
                     f'height="{(r1 - r0) * sy:.1f}" fill="{colour}" fill-opacity="0.25" stroke="{colour}" '
                     f'stroke-width="1.5"><title>patch {k}: input rows {r0}..{r1 - 1}, columns {c0}..{c1 - 1}'
                     f'</title></rect>')
    _, oh, ow, _ = patch["output_shape"]
    for r0, r1, c0, c1 in patch["output_regions"]:
        # the seams between cells, in input coordinates (output cell edges scaled to the input)
        parts.append(f'<rect x="{1 + c0 * width / ow:.1f}" y="{1 + r0 * height / oh:.1f}" '
                     f'width="{(c1 - c0) * width / ow:.1f}" height="{(r1 - r0) * height / oh:.1f}" fill="none" '
                     f'stroke="#333" stroke-dasharray="3 3" stroke-width="0.8"/>')
    parts.append(f'<text x="2" y="{height + 18}" class="axis">ops {first}..{last}: {rows}x{cols} patches of a '
                 f'{h}x{w}x{c} input</text></svg>')
    return "".join(parts)
