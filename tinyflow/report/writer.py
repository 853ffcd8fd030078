"""Turn a deploy's report.json into report.md and a self-contained report.html. No computation here:
every number comes from the report; the HTML embeds its charts as SVG and needs no network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jinja2

from ..paths import report_templates_dir
from .charts import arena_timeline, bars, patch_grid


def _environment() -> jinja2.Environment:
    # The HTML template is named report.html.j2: autoescaping must match that suffix, or a model or board
    # name reaches the page as markup.
    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(report_templates_dir())),
                              undefined=jinja2.StrictUndefined,
                              autoescape=jinja2.select_autoescape(["html", "html.j2"]),
                              trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f} %"


def _kib(n: int | None) -> str:
    return "–" if n is None else f"{n / 1024:,.1f} KiB"


def optimize_line(opt: dict[str, Any]) -> str:
    """What the optimize stage did, in one line: method, sparsity reached against the target, epochs."""
    sp = opt.get("sparsity") or {}
    parts = [f"{opt['method']}: {opt['quantization']}"]
    if sp.get("target") is not None:
        kind = "2:4 structured" if sp.get("structured_2_4") else "magnitude"
        parts.append(f"{kind} pruning to {_pct(sp.get('overall'))} of kernel weights (target {_pct(sp['target'])})")
        skipped = sp.get("skipped") or {}
        if skipped:
            parts.append(f"{len(skipped)} layer{'s' if len(skipped) > 1 else ''} left dense")
    if opt.get("fine_tune_epochs"):
        parts.append(f"{opt['fine_tune_epochs']} fine-tuning epochs")
    return "; ".join(parts)


def summary_rows(report: dict[str, Any]) -> list[tuple[str, str]]:
    """The few lines a person reads first: accuracy float/int8/device, sizes, memory, latency."""
    m, acc, mem, dev = report["model"], report.get("accuracy") or {}, report.get("memory") or {}, report.get("device")
    rows = [("board", f"{report['board']['name']} ({report['board']['id']})")]
    if acc.get("task") == "classification":
        device_acc = _pct(dev["accuracy"]) + (" (simulated)" if dev and dev["kind"] == "simulated" else "") \
            if dev and dev.get("accuracy") is not None else "–"
        rows.append(("accuracy float → int8 → device",
                     f"{_pct(acc['float'])} → {_pct(acc['int8'])} → {device_acc}"))
    elif acc.get("task") == "regression":
        device_mse = f" → {dev['mse']:.6g}" + (" (simulated)" if dev["kind"] == "simulated" else "") \
            if dev and dev.get("mse") is not None else ""
        rows.append(("MSE float → int8" + (" → device" if device_mse else ""),
                     f"{acc['float_mse']:.6g} → {acc['int8_mse']:.6g}{device_mse}"))
        if acc.get("float_auc") is not None:
            device_auc = f" → {dev['auc']:.4f}" if dev and dev.get("auc") is not None else ""
            rows.append(("anomaly AUC float → int8" + (" → device" if device_auc else ""),
                         f"{acc['float_auc']:.4f} → {acc['int8_auc']:.4f}{device_auc}"))
    opt = report.get("optimize")
    if opt:
        rows.append(("optimization", optimize_line(opt)))
    rows.append(("size", f"{_kib(m['float_params_bytes'])} float params → {_kib(m['tflite_bytes'])} int8 .tflite"))
    arena, flash = mem.get("arena"), mem.get("flash")
    if arena:
        rows.append(("arena", f"{arena['firmware_bytes']:,} B in {(arena['region'] or '?').upper()} of "
                              f"{_kib(arena['limit_bytes'])} (smallest that builds: {arena['min_bytes']:,} B)"))
        if arena.get("rewrite"):
            rows.append(("graph rewrite", rewrite_line(arena)))
        elif arena.get("offline_plan"):
            o = arena["offline_plan"]
            rows.append(("memory plan", f"tinyflow's offline plan: arena {arena['min_bytes']:,} B vs "
                                        f"{arena['greedy_min_bytes']:,} B with TFLM's own (-{o['saving_bytes']:,} B)"))
    if flash:
        rows.append(("flash", f"{_kib(flash['total_bytes'])} of {_kib(flash['limit_bytes'])} "
                              f"({flash['partition_table']})"))
    if mem.get("latency_estimate_us") is not None:
        rows.append(("latency, estimated", f"{mem['latency_estimate_us'] / 1000:.2f} ms on {report['board']['id']}"))
    if dev:
        label = "simulated on the host" if dev["kind"] == "simulated" else "measured on the device"
        rows.append((f"latency, {label}", f"{dev['latency_us']['median'] / 1000:.3f} ms median "
                                          f"(p90 {dev['latency_us']['p90'] / 1000:.3f} ms)"))
        if dev.get("bit_exact_share") is not None:
            rows.append(("device outputs equal to host TFLM", _pct(dev["bit_exact_share"])))
    rows.append(("fits", "yes" if mem.get("fits") else "no"))
    return rows


def rewrite_line(arena: dict[str, Any]) -> str:
    """One line for a graph rewrite: the arenas side by side, what it did, what it costs."""
    r = arena["rewrite"]
    saved = 1 - arena["min_bytes"] / r["original_arena_bytes"]
    macs = f"+{r['extra_macs']:,} MACs (+{r['extra_macs'] / max(r['original_macs'], 1):.1%})"
    lat = ""
    if r["latency_increase"] is not None:
        lat = (f"; latency estimate {r['original_latency_estimate_us'] / 1000:,.2f} → "
               f"{r['latency_estimate_us'] / 1000:,.2f} ms (+{r['latency_increase']:.1%}, bound "
               f"{r['max_latency_increase']:.0%})")
    offline = " with an offline plan" if arena.get("offline_plan") else ""
    return (f"arena {r['original_arena_bytes']:,} B (TFLM, the converter's graph; best without a rewrite "
            f"{r['unrewritten_min_bytes']:,} B) → {arena['min_bytes']:,} B rewritten{offline} (-{saved:.1%}): "
            f"{r['description']}; {macs}, {r['original_ops']} → {r['ops']} ops{lat}")


def _charts(report: dict[str, Any]) -> dict[str, str]:
    mem = report.get("memory") or {}
    ops = mem.get("ops") or []
    arena = mem.get("arena")
    charts: dict[str, str] = dict.fromkeys(("arena", "macs", "bytes", "optime", "accuracy", "patches"), "")
    if arena and arena.get("rewrite"):
        charts["patches"] = "".join(patch_grid(p, f"patch-grid-{k}") for k, p in enumerate(arena["rewrite"]["patches"]))
    if arena:
        charts["arena"] = arena_timeline(arena["buffers"], arena["head_bytes"], arena["lower_bound_bytes"],
                                         len(ops), "arena-chart")
    labels = [f"{o['index']} {o['op']}" for o in ops]
    charts["macs"] = bars(labels, [o["macs"] for o in ops], "macs-chart")
    charts["bytes"] = bars(labels, [o["output_bytes"] for o in ops], "bytes-chart", " B", colour="#59a14f")
    dev = report.get("device")
    if dev and dev.get("profile"):
        prof = dev["profile"]
        charts["optime"] = bars([f"{p['index']} {p['op']}" for p in prof], [p["us"] for p in prof], "optime-chart",
                                " µs", colour="#e15759",
                                notes=[f"({p['macs_per_cycle']:.2f} MAC/cycle)" if p["macs_per_cycle"] else ""
                                       for p in prof])
    acc = report.get("accuracy") or {}
    if acc.get("task") == "classification":
        names, values = ["float (Keras)", "int8 (host TFLM)"], [acc["float"], acc["int8"]]
        if acc.get("float_optimized") is not None:
            names.insert(1, "float, pruned")
            values.insert(1, acc["float_optimized"])
        if dev and dev.get("accuracy") is not None:
            names.append("on the device" + (" (simulated)" if dev["kind"] == "simulated" else ""))
            values.append(dev["accuracy"])
        charts["accuracy"] = bars(names, [None if v is None else 100 * v for v in values], "accuracy-chart", " %",
                                  colour="#76b7b2")
    return charts


def render_markdown(report: dict[str, Any]) -> str:
    return _environment().get_template("report.md.j2").render(r=report, summary=summary_rows(report))


def render_html(report: dict[str, Any]) -> str:
    return _environment().get_template("report.html.j2").render(r=report, summary=summary_rows(report),
                                                                 charts=_charts(report))


def write_reports(report: dict[str, Any], dest: Path) -> tuple[Path, Path]:
    from ..outdir import write_text

    md, html = dest / "report.md", dest / "report.html"
    write_text(md, render_markdown(report))
    write_text(html, render_html(report))
    return md, html
