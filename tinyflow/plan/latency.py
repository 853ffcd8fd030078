"""Estimate on-device latency from per-op work and the board's cost table. Always labelled an estimate.

Per op: multiply-accumulates times the board's cycles per MAC for that op type (1x1 convolutions,
other convolutions, depthwise, fully connected), window reads for pooling, output elements for the
rest, plus a fixed dispatch overhead per op. The figures come from published kernel and model timings
cited in each board file; they are good to perhaps 2x, which is why tinyflow measures on the device.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..boards import Board
from ..graph import ModelGraph, Operator


@dataclass(frozen=True)
class LatencyEstimate:
    total_us: float
    per_op_us: tuple[float, ...]
    psram: bool
    basis: str


def op_cycles(op: Operator, graph: ModelGraph, board: Board) -> float:
    m = board.latency
    out = graph.main.tensors[op.outputs[0]] if op.outputs else None
    elements = out.elements if out is not None else 0
    cycles = m.op_overhead_cycles
    if op.name == "CONV_2D":
        w = graph.main.tensors[op.inputs[1]]  # [Cout, KH, KW, Cin]
        if w.shape[1] == w.shape[2] == 1:
            rate = m.pointwise_cycles_per_mac
        else:
            rate = m.wide_conv_cycles_per_mac if w.shape[3] >= 8 else m.conv_cycles_per_mac
        cycles += op.macs * rate
    elif op.name == "DEPTHWISE_CONV_2D":
        cycles += op.macs * m.depthwise_cycles_per_mac
    elif op.name in ("FULLY_CONNECTED", "BATCH_MATMUL", "TRANSPOSE_CONV"):
        cycles += op.macs * m.fc_cycles_per_mac
    elif op.name in ("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"):
        window = op.options.get("filterWidth", 1) * op.options.get("filterHeight", 1)
        cycles += elements * window * m.pool_cycles_per_read
    elif op.name in ("MEAN", "SUM"):
        inp = graph.main.tensors[op.inputs[0]]
        cycles += inp.elements * m.pool_cycles_per_read
    elif op.name not in ("RESHAPE", "SQUEEZE", "EXPAND_DIMS"):
        cycles += elements * m.element_cycles
    return cycles * m.scale


def estimate(graph: ModelGraph, board: Board, psram: bool = False) -> LatencyEstimate | None:
    """None for boards without a cost table (the simulated board measures host time instead)."""
    if board.latency is None or not board.cpu_mhz:
        return None
    factor = board.psram_latency_factor if psram else 1.0
    per_op = tuple(op_cycles(op, graph, board) * factor / board.cpu_mhz for op in graph.main.operators)
    basis = f"estimate from MACs and {board.id}'s cost table ({board.kernel_library} kernels at {board.cpu_mhz} MHz" + \
        (", arena in PSRAM)" if psram else ")")
    return LatencyEstimate(sum(per_op), per_op, psram, basis)
