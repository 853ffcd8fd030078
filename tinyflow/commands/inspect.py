"""``tinyflow inspect``: the per-op table of a ``.tflite`` (the graph stage)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from . import Command


def _shape(t: Any) -> str:
    return "x".join(map(str, t.shape[1:] if len(t.shape) > 1 else t.shape)) or "scalar"


def cmd_inspect(a: argparse.Namespace) -> int:
    from ..graph import read_graph_file
    from ..report import out_console, size, table

    g = read_graph_file(a.model)
    sg = g.main
    if a.json:
        print(json.dumps(_graph_json(g), indent=2))
        return 0
    live = g.live_bytes()
    rows = []
    for op in sg.operators:
        ins = [sg.tensors[i] for i in op.inputs if i >= 0 and not sg.tensors[i].is_constant]
        outs = [sg.tensors[i] for i in op.outputs]
        rows.append([str(op.index), op.name if op.supported_by_tflm else f"[red]{op.name} (no TFLM kernel)[/red]",
                     " + ".join(_shape(t) for t in ins) + " → " + " + ".join(_shape(t) for t in outs),
                     f"{op.macs:,}", size(op.param_bytes), size(live[op.index])])
    title = (f"{Path(a.model).name}: {len(sg.operators)} ops, {g.total_macs:,} MACs, {size(g.param_bytes)} of "
             f"weights, {size(g.size_bytes)} file")
    out_console.print(table(title, ["#", "op", "activations", "MACs", "params", "live"], rows, left=3))
    if g.unsupported_ops:
        names = ", ".join(f"{name} (op {i})" for i, name in g.unsupported_ops)
        out_console.print(f"[red]TFLM has no kernel for: {names}[/red] — on the device this is "
                          "\"Didn't find op for builtin opcode\"")
        return 1
    return 0


def _graph_json(g: Any) -> dict[str, Any]:
    sg = g.main
    live = g.live_bytes()
    return {
        "file_bytes": g.size_bytes, "sha256": g.sha256, "macs": g.total_macs, "param_bytes": g.param_bytes,
        "quantized": g.is_quantized, "subgraphs": len(g.subgraphs),
        "unsupported_ops": [{"index": i, "op": n} for i, n in g.unsupported_ops],
        "ops": [{"index": op.index, "op": op.name, "version": op.version, "macs": op.macs,
                 "param_bytes": op.param_bytes, "input_bytes": op.input_bytes, "output_bytes": op.output_bytes,
                 "live_bytes": live[op.index], "inputs": list(op.inputs), "outputs": list(op.outputs)}
                for op in sg.operators],
        "tensors": [{"index": t.index, "name": t.name, "dtype": t.dtype.lower(), "shape": list(t.shape),
                     "bytes": t.bytes, "constant": t.is_constant, "variable": t.is_variable,
                     "first_use": t.first_use, "last_use": t.last_use,
                     "scales": list(t.quantization.scales) if t.quantization else None,
                     "zero_points": list(t.quantization.zero_points) if t.quantization else None,
                     "quantized_dimension": t.quantization.axis if t.quantization else None}
                    for t in sg.tensors],
    }


def register(command: Command) -> None:
    p = command("inspect", cmd_inspect, "per-op table of a .tflite: shapes, MACs, weights, live activation bytes")
    p.add_argument("model", help="a .tflite file")
    p.add_argument("--json", action="store_true", help="print JSON (ops and tensors)")
