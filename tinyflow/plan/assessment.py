"""Everything ``tinyflow plan`` says about a model on a board: exact arena, budget, hazards, latency estimate."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ..boards import Board, all_boards
from ..errors import InputError
from ..graph import ModelGraph, read_graph
from ..model import DEFAULT_RUN_ARENA, check_runs
from .budget import Budget, check
from .hazards import Hazard, find_hazards
from .kernel_libraries import arduino_kernels_note, build_versions, kernels_label, planned_version, rules_id
from .latency import LatencyEstimate, estimate
from .placement import OfflinePlan, improve_model
from .planner import MemoryPlan, plan_graph
from .rewrites import DEFAULT_MAX_LATENCY_INCREASE, RewriteChoice, choose_rewrite, same_outputs


@dataclass(frozen=True)
class BoardPlan:
    board: Board
    graph: ModelGraph
    memory: MemoryPlan | None  # None when TFLM cannot load the model at all (ops without a kernel)
    budget: Budget | None
    hazards: tuple[Hazard, ...]
    unsupported_ops: tuple[tuple[int, str], ...]
    latency: LatencyEstimate | None
    kernels: str
    warnings: tuple[str, ...]
    # With an offline plan or a graph rewrite: the model to deploy, TFLM's own plan of the converter's graph,
    # the offline plan found, the rewrite chosen.
    tflite: bytes | None = None
    greedy_memory: MemoryPlan | None = None
    offline: OfflinePlan | None = None
    rewrite: RewriteChoice | None = None
    # The best the converter's graph reaches (with its own offline plan, if one helps): what the rewrite beat.
    unrewritten_min_bytes: int | None = None

    @property
    def fits(self) -> bool:
        return self.budget is not None and self.budget.fits and not self.hazards and not self.unsupported_ops

    def to_json(self) -> dict[str, Any]:
        m, b, lat = self.memory, self.budget, self.latency
        ops = []
        per_op_us = lat.per_op_us if lat else [None] * len(self.graph.main.operators)
        for op, us in zip(self.graph.main.operators, per_op_us, strict=True):
            ops.append({"index": op.index, "op": op.name, "macs": op.macs, "param_bytes": op.param_bytes,
                        "input_bytes": op.input_bytes, "output_bytes": op.output_bytes,
                        "latency_estimate_us": None if us is None else round(us, 1)})
        return {
            "board": {"id": self.board.id, "name": self.board.name, "simulated": self.board.simulated},
            "kernels": self.kernels,
            # Which rules sized the arena, and the exact versions the generated project pins (HELLO reports them).
            "kernel_library": self.board.kernel_library,
            "kernel_library_version": planned_version(self.board),
            "build_versions": build_versions(self.board),
            "fits": self.fits,
            "arena": None if m is None else {
                "min_bytes": m.min_arena_bytes,
                "greedy_min_bytes": (self.greedy_memory or m).min_arena_bytes,
                "greedy_head_bytes": (self.greedy_memory or m).head_bytes,
                "offline_plan": None if self.offline is None else {
                    "strategy": self.offline.strategy,
                    "head_bytes": self.offline.head_bytes,
                    "greedy_head_bytes": self.offline.greedy_head_bytes,
                    "lower_bound_bytes": self.offline.lower_bound_bytes,
                    "optimal": self.offline.optimal,
                    "aliased_reshapes": self.offline.aliased_reshapes,
                    "saving_bytes": self.offline.saving_bytes,
                    "reordered": self.offline.reordered,
                    "search_seconds": round(self.offline.seconds, 3),
                },
                "rewrite": None if self.rewrite is None else {
                    **self.rewrite.to_json(), "unrewritten_min_bytes": self.unrewritten_min_bytes},
                "firmware_bytes": b.arena_bytes,
                "margin_bytes": self.board.arena_margin_bytes,
                "head_bytes": m.head_bytes,
                "tail_bytes": m.tail_bytes,
                "lower_bound_bytes": m.lower_bound_bytes,
                "scratch_bytes": m.scratch_bytes,
                "region": b.region,
                "limit_bytes": b.arena_limit_bytes,
                "binding": m.binding,
                "tail_breakdown": m.tail_breakdown,
                "peak_tensors": [{"name": p.name, "bytes": p.bytes, "producer": p.producer} for p in b.peak],
                "buffers": [{"name": x.name, "bytes": x.size, "first": x.first, "last": x.last, "offset": x.offset,
                             "tensor": x.tensor, "op": x.op} for x in m.buffers],
            },
            "flash": None if b is None else {
                "model_bytes": self.graph.size_bytes,
                "firmware_estimate_bytes": b.firmware_bytes,
                "total_bytes": b.flash_total_bytes,
                "limit_bytes": b.flash_limit_bytes,
                "partition_table": b.partition_table,
            },
            "hazards": [{"op_index": h.op_index, "op": h.op, "tensor": h.tensor, "kind": h.kind, "cause": h.cause}
                        for h in self.hazards],
            "unsupported_ops": [{"index": i, "op": n} for i, n in self.unsupported_ops],
            "problems": list(b.problems) if b else [],
            "remedies": list(b.remedies) if b else [],
            "notes": list(b.notes if b else ()) + list(self.warnings),
            "ops": ops,
            "latency_estimate_us": None if lat is None else round(lat.total_us, 1),
            "latency_estimate_basis": None if lat is None else lat.basis,
        }


def _check_shapes(graph: ModelGraph) -> None:
    for sg in graph.subgraphs:
        for t in sg.tensors:
            dynamic = any(d < 0 for d in t.shape) or any(d < 0 for d in t.shape_signature[1:])
            if dynamic and not t.is_constant:
                raise InputError(f"{graph.source}: tensor '{t.name}' has a dynamic shape {list(t.shape_signature)}; "
                                 "TFLM needs fixed shapes: convert with a fixed input shape (batch 1)")


def _host_arena(graph: ModelGraph) -> int:
    # Room for every activation at once plus the (64-bit host's) persistent tail: enough to build any model
    # that builds at all, so a failure is the model's, not the arena's.
    activations = sum(t.bytes for sg in graph.subgraphs for t in sg.tensors if not t.is_constant)
    return max(DEFAULT_RUN_ARENA, 2 * activations + (4 << 20))


def _boards_that_fit(graph: ModelGraph, current: Board, extra: tuple[str, ...]) -> str:
    fitting = []
    for other in all_boards(extra):
        if other.id == current.id or other.simulated:
            continue
        mem = plan_graph(graph, other.pointer_bytes, rules_id(other), other.mcu)
        b = check(graph, mem, other)
        if b.fits:
            fitting.append(f"{other.id} ({b.region})")
    return f"boards it fits: {', '.join(fitting)}" if fitting else ""


def assess(graph: ModelGraph, board: Board, psram: bool | None = None, board_files: tuple[str, ...] = (),
           tflite: bytes | None = None, offline: bool = False, rewrite: bool = True,
           max_latency_increase: float = DEFAULT_MAX_LATENCY_INCREASE) -> BoardPlan:
    """``offline``: also search an offline memory plan and (unless ``rewrite`` is False) an exact graph rewrite
    (patches, channel groups) whose latency estimate grows by at most ``max_latency_increase`` (both need
    ``tflite``); the smallest arena wins, and the result describes the model to deploy (``BoardPlan.tflite``)
    with TFLM's figure for the converter's graph beside it.

    With ``tflite``, a model that could fit is first built and invoked once by the host TFLM interpreter (in
    a child): one TFLM cannot run is an ``InputError`` with what TFLM said, never a plan that fits. Without
    it the plan is of the graph alone."""
    _check_shapes(graph)
    rules_id(board)  # an unknown kernel_library_version is refused before the model is run or searched
    runnable = tflite is not None and not graph.unsupported_ops and not find_hazards(graph)
    if runnable:
        check_runs(tflite, graph.source, _host_arena(graph))
    if not (offline and runnable):
        return _assess(graph, board, psram, board_files)
    original = plan_graph(graph, board.pointer_bytes, rules_id(board), board.mcu)
    # (arena, model, graph, offline plan, rewrite): the converter's graph as it is, then the alternatives
    options: list[tuple[int, bytes, ModelGraph, OfflinePlan | None, RewriteChoice | None]] = [
        (original.min_arena_bytes, tflite, graph, None, None)]
    warnings: list[str] = []
    choice = choose_rewrite(tflite, graph, board, max_latency_increase) if rewrite else None
    if choice is not None:
        source = f"{graph.source} (rewritten: {choice.rewrite.describe()})"
        rewritten = read_graph(choice.tflite, source)
        check_runs(choice.tflite, source, _host_arena(rewritten))
        if same_outputs(tflite, choice.tflite, rewritten):
            options.append((choice.arena_bytes, choice.tflite, rewritten, None, choice))
        else:  # the rewrite is exact by construction: a difference is a bug, and the original is kept
            warnings.append("the graph rewrite changed the model's outputs on the host TFLM (a bug in tinyflow; "
                            "please report it): kept the converter's graph")
            choice = None
    for _, data, g, _, ch in list(options):
        improved = improve_model(data, g, board.pointer_bytes, rules_id(board), board.mcu)
        if improved is not None:
            planned_data, plan = improved
            source = f"{g.source} (with its offline memory plan)"
            planned = read_graph(planned_data, source)
            check_runs(planned_data, source, _host_arena(planned))
            arena = plan_graph(planned, board.pointer_bytes, rules_id(board), board.mcu).min_arena_bytes
            options.append((arena, planned_data, planned, plan, ch))
    unrewritten = min(o[0] for o in options if o[4] is None)
    arena, data, g, plan, ch = min(options, key=lambda o: (o[0], o[4] is not None))  # a tie keeps the graph
    bp = _assess(g, board, psram, board_files)
    if ch is None and plan is None:
        return replace(bp, warnings=bp.warnings + tuple(warnings))
    return replace(bp, tflite=data, greedy_memory=original, offline=plan, rewrite=ch,
                   unrewritten_min_bytes=unrewritten if ch is not None else None,
                   warnings=bp.warnings + tuple(warnings))


def _assess(graph: ModelGraph, board: Board, psram: bool | None, board_files: tuple[str, ...]) -> BoardPlan:
    warnings = []
    if not graph.is_quantized:
        warnings.append("the model is not fully int8: TFLM runs it with float reference kernels (ESP-NN and "
                        "CMSIS-NN only accelerate int8), and the arena holds float activations")
    kernels = kernels_label(board)
    note = arduino_kernels_note(board)
    if note is not None:
        warnings.append(note)
    unsupported = tuple(graph.unsupported_ops)
    hazards = tuple(find_hazards(graph))
    if unsupported:
        return BoardPlan(board, graph, None, None, hazards, unsupported, None, kernels, tuple(warnings))
    memory = plan_graph(graph, board.pointer_bytes, rules_id(board), board.mcu)
    budget = check(graph, memory, board, psram)
    if not budget.fits:
        hint = _boards_that_fit(graph, board, board_files)
        budget = check(graph, memory, board, psram, hint) if hint else budget
    latency = estimate(graph, board, psram=budget.region == "psram")
    return BoardPlan(board, graph, memory, budget, hazards, unsupported, latency, kernels, tuple(warnings))
