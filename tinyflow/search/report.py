"""report.html of a search: the Pareto front as an inline SVG (accuracy against latency, arena as colour,
the budget drawn), the trial history, and the chosen model's deploy summary. Every number comes from the
records the search wrote; the page needs no network."""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

import jinja2

from ..boards import Board
from ..outdir import write_text
from ..paths import report_templates_dir
from ..report import summary_rows
from .trial import latency_for_search

_W, _H = 760, 420
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 150, 24, 76


def _colour(t: float) -> str:
    """Light yellow (small arena) to dark purple (large): a sequential scale readable in grey too."""
    stops = [(253, 231, 37), (94, 201, 98), (33, 145, 140), (59, 82, 139), (68, 1, 84)]
    t = min(max(t, 0.0), 1.0) * (len(stops) - 1)
    i = min(int(t), len(stops) - 2)
    f = t - i
    r, g, b = (round(a + (c - a) * f) for a, c in zip(stops[i], stops[i + 1], strict=True))
    return f"#{r:02x}{g:02x}{b:02x}"


def pareto_chart(records: list[dict[str, Any]], front: list[dict[str, Any]], limits: dict[str, Any],
                 latency_label: str) -> str:
    """Every trial with figures: trained ones at their int8 accuracy, rejected ones on the bottom strip."""
    pts = [r for r in records if r.get("arena_bytes") is not None and r.get("macs") is not None]
    if not pts:
        return '<svg id="pareto-chart" class="chart" width="760" height="40"><text x="8" y="24">no trial has ' \
               'figures yet</text></svg>'
    front_ids = {r["number"] for r in front}
    xs = [latency_for_search(r) for r in pts]
    max_latency = limits.get("max_latency_ms")
    x_top = max(xs + ([1000 * max_latency] if max_latency else [])) * 1.08 or 1.0
    arenas = [r["arena_bytes"] for r in pts]
    max_arena = limits.get("max_arena_bytes")
    a_low, a_high = min(arenas + ([max_arena] if max_arena else [])), max(arenas + ([max_arena] if max_arena else []))
    span = max(a_high - a_low, 1)
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM
    strip = 22  # the bottom strip of untrained (rejected, pruned, failed) trials

    def x(v: float) -> float:
        return _LEFT + plot_w * v / x_top

    def y(acc: float) -> float:
        return _TOP + (plot_h - strip) * (1 - acc)

    unit = "ms" if any(r.get("latency_us") is not None for r in pts) else "MACs"
    scale = 1000 if unit == "ms" else 1
    parts = [f'<svg id="pareto-chart" class="chart" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{_H}" '
             f'role="img" aria-label="accuracy against latency; colour: arena">']
    for k in range(6):
        acc = k / 5
        parts.append(f'<line x1="{_LEFT}" x2="{_LEFT + plot_w}" y1="{y(acc):.1f}" y2="{y(acc):.1f}" stroke="#eee"/>'
                     f'<text x="{_LEFT - 6}" y="{y(acc) + 4:.1f}" text-anchor="end" class="axis">{100 * acc:.0f} %'
                     '</text>')
    for k in range(6):
        v = x_top * k / 5
        parts.append(f'<text x="{x(v):.1f}" y="{_TOP + plot_h + 16}" text-anchor="middle" class="axis">'
                     f'{v / scale:,.2f}</text>')
    base = _TOP + plot_h - strip / 2
    parts.append(f'<rect x="{_LEFT}" y="{_TOP + plot_h - strip}" width="{plot_w}" height="{strip}" fill="#f4f4f4"/>'
                 f'<text x="{_LEFT - 6}" y="{base + 4:.1f}" text-anchor="end" class="axis">not trained</text>')
    if max_latency:
        lx = x(1000 * max_latency)
        parts.append(f'<line class="budget latency-budget" x1="{lx:.1f}" x2="{lx:.1f}" y1="{_TOP}" '
                     f'y2="{_TOP + plot_h}" stroke="#d62728" stroke-width="2" stroke-dasharray="6 3"/>'
                     f'<text x="{lx - 4:.1f}" y="{_TOP + 12}" text-anchor="end" fill="#d62728">latency budget '
                     f'{max_latency:g} ms</text>')
    ordered = sorted((r for r in front), key=lambda r: latency_for_search(r))
    if len(ordered) > 1:
        # The front as a staircase: the best accuracy reachable at each latency.
        path, best = [], -1.0
        for r in ordered:
            if r["accuracy"] > best:
                px, py = x(latency_for_search(r)), y(r["accuracy"])
                path.append(f"M{px:.1f},{py:.1f}" if not path else f"H{px:.1f} V{py:.1f}")
                best = r["accuracy"]
        parts.append(f'<path class="front" d="{" ".join(path)}" fill="none" stroke="#333" stroke-width="1.2"/>')
    for r, xv in zip(pts, xs, strict=True):
        trained = r.get("accuracy") is not None and r["state"] == "COMPLETE"
        cy = y(r["accuracy"]) if trained else base + (r["number"] % 3 - 1) * 5
        fill = _colour((r["arena_bytes"] - a_low) / span)
        on_front = r["number"] in front_ids
        cls = "point front-point" if on_front else ("point" if trained else "point rejected")
        shape = (f'<circle class="{cls}" cx="{x(xv):.1f}" cy="{cy:.1f}" r="{7 if on_front else 5}" fill="{fill}" '
                 f'stroke="{"#000" if on_front else "#666"}" stroke-width="{2 if on_front else 0.8}"'
                 + (' fill-opacity="0.45"' if not trained else "") + ">")
        acc = f"{100 * r['accuracy']:.1f} %" if r.get("accuracy") is not None else "not trained"
        why = f" — {r['reason']}" if r.get("reason") else ""
        parts.append(f'{shape}<title>trial {r["number"]}: {acc}, {latency_label} {xv / scale:,.3f} {unit}, arena '
                     f'{r["arena_bytes"]:,} B{escape(why)}</title></circle>')
    parts.append(f'<text x="{_LEFT + plot_w / 2:.0f}" y="{_TOP + plot_h + 36}" text-anchor="middle" class="axis">'
                 f'latency ({escape(latency_label)}, {unit})</text>')
    parts.append(f'<text x="14" y="{_TOP + plot_h / 2:.0f}" transform="rotate(-90 14 {_TOP + plot_h / 2:.0f})" '
                 'text-anchor="middle" class="axis">int8 accuracy (host TFLM)</text>')
    # The arena's colour scale, with the arena budget marked on it.
    lx0, ly0, lh = _W - _RIGHT + 40, _TOP + 10, plot_h - 40
    for k in range(20):
        parts.append(f'<rect x="{lx0}" y="{ly0 + lh * (1 - (k + 1) / 20):.1f}" width="16" height="{lh / 20 + 0.5:.1f}" '
                     f'fill="{_colour(k / 19)}"/>')
    parts.append(f'<text x="{lx0 + 22}" y="{ly0 + 4}" class="axis">{a_high:,} B</text>'
                 f'<text x="{lx0 + 22}" y="{ly0 + lh + 4}" class="axis">{a_low:,} B</text>'
                 f'<text x="{lx0 - 4}" y="{ly0 - 8}" class="axis">arena</text>')
    if max_arena:
        by = ly0 + lh * (1 - (max_arena - a_low) / span)
        parts.append(f'<line class="budget arena-budget" x1="{lx0 - 6}" x2="{lx0 + 22}" y1="{by:.1f}" y2="{by:.1f}" '
                     f'stroke="#d62728" stroke-width="2"/><text x="{lx0 + 24}" y="{by + 4:.1f}" fill="#d62728" '
                     f'class="axis">budget</text>')
    parts.append(f'<text x="{_LEFT}" y="{_H - 10}" class="axis">ringed: the Pareto front; on the grey strip, faded: '
                 'not trained or not evaluated (rejected, pruned, failed)</text>')
    parts.append("</svg>")
    return "".join(parts)


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(report_templates_dir())),
                              undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def render(summary: dict[str, Any], records: list[dict[str, Any]], front: list[dict[str, Any]],
           best_report: dict[str, Any] | None, board: Board, deploy_dir: Path | None) -> str:
    label = summary["latency_objective"]
    chart = pareto_chart(records, front, summary["limits"], label)
    rows = summary_rows(best_report) if best_report else []
    return _environment().get_template("search.html.j2").render(
        s=summary, records=records, front=front, chart=chart, best_rows=rows, board=board,
        deploy_dir=str(deploy_dir) if deploy_dir else None)


def write_report(path: Path, summary: dict[str, Any], records: list[dict[str, Any]], front: list[dict[str, Any]],
                 best_report: dict[str, Any] | None, board: Board, deploy_dir: Path | None) -> Path:
    write_text(path, render(summary, records, front, best_report, board, deploy_dir))
    return path
