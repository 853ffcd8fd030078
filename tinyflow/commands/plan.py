"""``tinyflow plan``: the exact arena, budget, hazards and latency estimate for a board (the plan stage)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import Command
from .options import board_options, kernel_choice, kernel_options, psram_choice, psram_options, rewrite_options


def print_board_plan(bp: Any) -> None:
    """The human view of a BoardPlan (shared by plan and deploy)."""
    from rich.markup import escape

    from ..report import out_console, rewrite_line, size, table

    j = bp.to_json()
    rows = [["board", f"{escape(bp.board.name)} ({bp.board.id})"], ["kernels", bp.kernels]]
    if j["arena"]:
        a, f = j["arena"], j["flash"]
        rows += [
            ["arena (smallest that builds)", f"{a['min_bytes']:,} B: planned head {a['head_bytes']:,} B, persistent "
                                             f"tail {a['tail_bytes']:,} B; set by {a['binding']}"],
        ]
        if a["rewrite"]:
            rows.append(["graph rewrite", rewrite_line(a)])
        if a["offline_plan"] and not a["rewrite"]:
            o = a["offline_plan"]
            rows.append(["offline memory plan",
                         f"head {o['head_bytes']:,} B instead of TFLM's {o['greedy_head_bytes']:,} B (arena "
                         f"{a['greedy_min_bytes']:,} B → {a['min_bytes']:,} B; {o['strategy']}"
                         f"{'; optimal' if o['optimal'] else ''})"])
        rows += [
            ["arena in firmware", f"{a['firmware_bytes']:,} B in {(a['region'] or 'nowhere').upper()} "
                                  f"(limit {size(a['limit_bytes'])})"],
            ["activations at best", f"{a['lower_bound_bytes']:,} B live at the peak (greedy plan: "
                                    f"{a['head_bytes']:,} B)"],
            ["flash", f"{size(f['total_bytes'])} = model {size(f['model_bytes'])} + firmware "
                      f"~{size(f['firmware_estimate_bytes'])} of {size(f['limit_bytes'])} "
                      f"({f['partition_table'] or 'no partition table fits'})"],
        ]
        if j["latency_estimate_us"] is not None:
            rows.append(["latency (estimate)",
                         f"{j['latency_estimate_us'] / 1000:,.2f} ms — {j['latency_estimate_basis']}"])
    rows.append(["fits", "[green]yes[/green]" if bp.fits else "[red]no[/red]"])
    out_console.print(table("tinyflow plan", ["", ""], rows))
    for h in bp.hazards:
        out_console.print(f"[red]hazard:[/red] {h}")
    for i, n in bp.unsupported_ops:
        out_console.print(f"[red]no TFLM kernel:[/red] op {i} ({n}); on the device: \"Didn't find op for builtin "
                          "opcode\"")
    for p in j["problems"]:
        out_console.print(f"[red]does not fit:[/red] {p}")
    for r in j["remedies"]:
        out_console.print(f"[yellow]to do:[/yellow] {r}")
    for n in j["notes"]:
        out_console.print(f"[dim]note:[/dim] {n}")


def cmd_plan(a: argparse.Namespace) -> int:
    from ..boards import find_board
    from ..graph import read_graph_file, read_tflite
    from ..outdir import check_output_file, write_bytes
    from ..plan import assess

    if a.write is not None:
        check_output_file(a.write, a.force)  # before the planning work, which a bad path would waste
    board = kernel_choice(a, find_board(a.board, tuple(a.board_file or ())))
    tflite = read_tflite(a.model)
    bp = assess(read_graph_file(a.model), board, psram_choice(a), tuple(a.board_file or ()), tflite, a.optimize,
                not a.no_rewrite, a.max_latency_increase)
    if a.write is not None:
        # Checked again: the file may have appeared while planning. The write never follows a link.
        check_output_file(a.write, a.force)
        write_bytes(Path(a.write), bp.tflite or tflite)
    if a.json:
        # allow_nan=False: NaN/Infinity are not JSON; a non-finite figure is a bug to see, not output to parse.
        print(json.dumps(bp.to_json(), indent=2, allow_nan=False))
    else:
        print_board_plan(bp)
    return 0 if bp.fits else 1


def register(command: Command) -> None:
    p = command("plan", cmd_plan, "the exact TFLM arena for a board, flash, hazards and a latency estimate "
                                  "(exit 1 when it does not fit)")
    p.add_argument("model", help="a .tflite file")
    board_options(p)
    psram_options(p)
    kernel_options(p)
    p.add_argument("--optimize", action="store_true",
                   help="search an offline memory plan that beats TFLM's greedy planner, and an exact graph "
                        "rewrite (patches, channel groups) that cuts the arena further")
    rewrite_options(p)
    p.add_argument("--write", metavar="OUT.tflite",
                   help="write the model to deploy (rewritten and with its offline plan, when found)")
    p.add_argument("--force", action="store_true", help="replace OUT.tflite if it exists")
    p.add_argument("--json", action="store_true", help="print JSON")
