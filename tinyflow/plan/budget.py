"""Check a planned model against a board: arena in SRAM or PSRAM, flash against a partition table.

Produces the numbers, and when something does not fit, what is largest at the peak and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..boards import Board
from ..graph import ModelGraph
from .planner import MemoryPlan


@dataclass(frozen=True)
class PeakTensor:
    name: str
    bytes: int
    producer: str  # "op 3 (CONV_2D)" or "model input" or "scratch"


@dataclass(frozen=True)
class Budget:
    arena_bytes: int  # what the firmware reserves: the smallest working arena + the board's margin
    region: str | None  # "sram", "psram", or None when it fits nowhere
    arena_limit_bytes: int
    firmware_bytes: int  # estimate: runtime + the kernels used
    flash_total_bytes: int
    flash_limit_bytes: int
    partition_table: str | None
    fits: bool
    problems: tuple[str, ...] = ()
    remedies: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    peak: tuple[PeakTensor, ...] = field(default_factory=tuple)


def peak_tensors(plan: MemoryPlan, graph: ModelGraph, count: int = 3) -> tuple[PeakTensor, ...]:
    """The largest buffers live at the moment the most bytes are live."""
    if not plan.buffers:
        return ()
    scopes = {b.first for b in plan.buffers} | {b.last for b in plan.buffers}
    at = max(scopes, key=lambda s: sum(b.size for b in plan.buffers if b.first <= s <= b.last))
    live = sorted((b for b in plan.buffers if b.first <= at <= b.last), key=lambda b: -b.size)[:count]
    ops = graph.main.operators
    out = []
    for b in live:
        if b.tensor is None:
            producer = "scratch"
        elif b.first <= 0 or b.first > len(ops):
            producer = "model input"
        else:
            producer = f"op {b.first - 1} ({ops[b.first - 1].name})"
        out.append(PeakTensor(b.name, b.size, producer))
    return tuple(out)


def _kib(n: int) -> str:
    return f"{n / 1024:,.1f} KiB"


def check(graph: ModelGraph, plan: MemoryPlan, board: Board, psram: bool | None = None,
          smaller_boards_hint: str = "") -> Budget:
    """``psram``: None chooses (SRAM when the arena fits there), True forces PSRAM, False forbids it."""
    arena = plan.min_arena_bytes + board.arena_margin_bytes
    problems, remedies, notes = [], [], []
    region, limit = None, board.arena_sram_bytes
    if psram is not True and arena <= board.arena_sram_bytes:
        region = "sram"
    elif board.psram_bytes and psram is not False and arena <= board.psram_bytes:
        region, limit = "psram", board.psram_bytes
        if psram is None:
            notes.append(f"the arena ({_kib(arena)}) does not fit the {_kib(board.arena_sram_bytes)} of internal "
                         f"SRAM, so it goes to PSRAM: about {round((board.psram_latency_factor - 1) * 100)}% slower")
        else:
            notes.append(f"arena placed in PSRAM as asked: about {round((board.psram_latency_factor - 1) * 100)}% "
                         "slower than internal SRAM")
    else:
        where = f"{_kib(board.arena_sram_bytes)} of internal SRAM"
        if board.psram_bytes and psram is not False:
            where += f" nor {_kib(board.psram_bytes)} of PSRAM"
            limit = board.psram_bytes
        problems.append(f"arena {_kib(arena)} does not fit the {where}: {_kib(arena - limit)} too many")
    peak = peak_tensors(plan, graph)
    if region is None:
        largest = ", ".join(f"{p.name} {_kib(p.bytes)} from {p.producer}" for p in peak)
        remedies.append(f"shrink the activations live at the peak ({largest}): fewer channels or an earlier "
                        "stride/pooling there")
        if plan.head_bytes > plan.lower_bound_bytes:
            remedies.append(f"an offline memory plan could cut the planned area from {_kib(plan.head_bytes)} toward "
                            f"{_kib(plan.lower_bound_bytes)}: tinyflow plan --optimize")
        if psram is False and board.psram_bytes:
            remedies.append("allow PSRAM (drop --no-psram)")
        if smaller_boards_hint:
            remedies.append(smaller_boards_hint)

    firmware = board.firmware_base_bytes + board.firmware_per_op_bytes * len(graph.op_names)
    flash = graph.size_bytes + firmware
    table = next((t for t in board.partition_tables if flash <= t.app_bytes), None)
    flash_limit = table.app_bytes if table else board.max_app_bytes
    if table is None:
        problems.append(f"flash {_kib(flash)} (model {_kib(graph.size_bytes)} + firmware ~{_kib(firmware)}) exceeds "
                        f"the largest app partition, {_kib(board.max_app_bytes)}")
        weights = sorted((t for t in graph.main.tensors if t.is_constant), key=lambda t: -t.bytes)[:3]
        remedies.append("fewer parameters: the largest weights are " +
                        ", ".join(f"{t.name} {_kib(t.bytes)}" for t in weights) +
                        " (pruning alone does not shrink the .tflite: TFLM stores dense weights)")
    return Budget(arena, region, limit, firmware, flash, flash_limit, table.name if table else None,
                  not problems, tuple(problems), tuple(remedies), tuple(notes), peak)
