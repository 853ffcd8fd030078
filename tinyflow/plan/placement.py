"""Offline memory plans that beat TFLM's greedy planner, written into the model as TFLM reads them.

TFLM places buffers largest-first at the first gap. That is often optimal on chains, but not always (on
the MLPerf VWW model it needs 73,728 B where 55,296 B are enough). This module searches placements of
the activation tensors with the strategies of the memory-planning literature (Pisarchyk & Lee 2020:
greedy by size, greedy by breadth; best-fit and first-fit; then a bounded randomized search around the
best order), keeps the smallest, and never returns one that is not better than TFLM's own. Kernel
scratch buffers cannot be planned offline (kernels request them at run time), so every candidate is
scored by what TFLM will really do: place the scratch buffers around the fixed offsets with its greedy
planner. RESHAPE outputs may share their input's bytes (TFLM's reshape kernel skips the copy when the
pointers are equal) when the input is not read afterwards.

The plan goes into the model's ``OfflineMemoryAllocation`` metadata: [version, subgraphs, n, offset...]
with one int32 per tensor of all subgraphs, -1 = plan at run time (TFLM docs/memory_management.md).
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass

import numpy as np

from ..graph import OFFLINE_PLAN_METADATA, ModelGraph, metadata_name
from .greedy import ONLINE, Buffer, arena_size, greedy_offsets, peak_live_bytes
from .planner import planned_buffers

DEFAULT_BUDGET_S = 2.0
_FORMAT_VERSION = 1


@dataclass(frozen=True)
class OfflinePlan:
    offsets: dict[int, int]  # flat tensor index -> arena offset
    head_bytes: int  # the planned head TFLM ends up with (scratch placed by TFLM around the offsets)
    greedy_head_bytes: int  # TFLM's own greedy plan
    lower_bound_bytes: int  # most bytes live at once (before RESHAPE sharing)
    strategy: str
    aliased_reshapes: int
    optimal: bool  # reached the lower bound: no placement can be smaller
    seconds: float
    reordered: bool = False  # the ops also run in a different (topological) order

    @property
    def saving_bytes(self) -> int:
        return self.greedy_head_bytes - self.head_bytes


@dataclass(frozen=True)
class _Item:
    """What gets placed: one tensor, or a RESHAPE input and output sharing bytes."""

    size: int
    first: int
    last: int
    tensors: tuple[int, ...]  # flat tensor indices


def _reshape_aliases(graph: ModelGraph, buffers: list[Buffer], meta: list[tuple]) -> list[tuple[int, int]]:
    """(input buffer, output buffer) pairs of RESHAPE ops whose input is not read after them."""
    by_tensor = {m[1]: i for i, m in enumerate(meta) if m[1] is not None}
    sg = graph.main
    pairs = []
    for op in sg.operators:
        if op.name != "RESHAPE" or not op.inputs or not op.outputs:
            continue
        src, dst = op.inputs[0], op.outputs[0]
        if src not in by_tensor or dst not in by_tensor or src in sg.outputs:
            continue
        a, b = by_tensor[src], by_tensor[dst]
        if buffers[a].size == buffers[b].size and buffers[a].last == op.index + 1:
            pairs.append((a, b))
    return pairs


def _items(graph: ModelGraph, buffers: list[Buffer], meta: list[tuple], alias: bool) -> list[_Item]:
    # Scratch buffers are placed too, to keep room for them where TFLM's greedy planner will put them;
    # only tensor offsets are written into the model.
    group = {i: [i] for i in range(len(buffers))}
    if alias:
        for a, b in _reshape_aliases(graph, buffers, meta):
            ga = next(g for g in group.values() if a in g)
            gb = group.pop(b)
            ga.extend(gb)
    items = []
    for members in group.values():
        bs = [buffers[i] for i in members]
        items.append(_Item(bs[0].size, min(b.first for b in bs), max(b.last for b in bs),
                           tuple(meta[i][3] for i in members if meta[i][3] is not None)))
    return items


def _place(items: list[_Item], order: list[int], best_fit: bool) -> list[int]:
    """Place items in ``order``: each at the lowest (first-fit) or tightest (best-fit) gap among the items
    already placed that are live at the same time, else on top of them."""
    offsets = [0] * len(items)
    placed: list[int] = []
    for i in order:
        it = items[i]
        busy = sorted((offsets[j], offsets[j] + items[j].size) for j in placed
                      if not (items[j].first > it.last or it.first > items[j].last))
        cursor, choice, best_gap = 0, None, None
        for start, end in busy:
            gap = start - cursor
            if gap >= it.size:
                if not best_fit:
                    choice = cursor
                    break
                if best_gap is None or gap < best_gap:
                    choice, best_gap = cursor, gap
            cursor = max(cursor, end)
        offsets[i] = cursor if choice is None else choice
        placed.append(i)
    return offsets


def _breadth_order(items: list[_Item]) -> list[int]:
    """Greedy by breadth: the most crowded moments first, each one's items largest first."""
    times = sorted({t for it in items for t in (it.first, it.last)})
    crowd = sorted(times, key=lambda t: -sum(it.size for it in items if it.first <= t <= it.last))
    order: list[int] = []
    for t in crowd:
        live = sorted((i for i, it in enumerate(items) if it.first <= t <= it.last and i not in order),
                      key=lambda i: -items[i].size)
        order += live
    return order + [i for i in range(len(items)) if i not in order]


def _write_items(items: list[_Item], offsets: list[int]) -> dict[int, int]:
    return {t: off for it, off in zip(items, offsets, strict=True) for t in it.tensors}


def _score(buffers: list[Buffer], meta: list[tuple], plan: dict[int, int]) -> int:
    """The head TFLM builds: our offsets fixed, scratch buffers placed by its greedy planner."""
    fixed = [Buffer(b.size, b.first, b.last, plan.get(m[3], ONLINE) if m[3] is not None else ONLINE)
             for b, m in zip(buffers, meta, strict=True)]
    return arena_size(fixed, greedy_offsets(fixed))


def optimize(graph: ModelGraph, pointer_bytes: int, kernel_library: str = "reference", mcu: str = "",
             budget_s: float = DEFAULT_BUDGET_S, seed: int = 0) -> OfflinePlan | None:
    """The best offline plan found within ``budget_s``, or None when TFLM's greedy plan cannot be beaten."""
    start = time.perf_counter()
    buffers, meta = planned_buffers(graph, pointer_bytes, kernel_library, mcu)
    if any(b.offline_offset != ONLINE for b in buffers):
        buffers = [Buffer(b.size, b.first, b.last) for b in buffers]  # re-plan a model that has a plan
    greedy = arena_size(buffers, greedy_offsets(buffers))
    bound = peak_live_bytes(buffers)
    best: tuple[int, dict[int, int], str, int] | None = None

    def consider(items: list[_Item], order: list[int], best_fit: bool, name: str, aliased: int) -> None:
        nonlocal best
        plan = _write_items(items, _place(items, order, best_fit))
        score = _score(buffers, meta, plan)
        if best is None or score < best[0]:
            best = (score, plan, name, aliased)

    candidates = []
    for alias in (False, True):
        items = _items(graph, buffers, meta, alias)
        aliased = len(_reshape_aliases(graph, buffers, meta)) if alias else 0
        n = range(len(items))
        orders = {
            "size": sorted(n, key=lambda i: (-items[i].size, items[i].first)),
            "size, longest first": sorted(n, key=lambda i: (-items[i].size, items[i].first - items[i].last)),
            "area": sorted(n, key=lambda i: -items[i].size * (items[i].last - items[i].first + 1)),
            "lifetime": sorted(n, key=lambda i: (items[i].first - items[i].last, -items[i].size)),
            "breadth": _breadth_order(items),
            "first use": sorted(n, key=lambda i: (items[i].first, -items[i].size)),
        }
        for name, order in orders.items():
            for best_fit in (False, True):
                consider(items, order, best_fit, f"greedy by {name}, {'best' if best_fit else 'first'}-fit"
                         + (", RESHAPE in place" if alias else ""), aliased)
        candidates.append((items, aliased))

    # Randomized search around the best order found so far, within the time budget.
    rng = random.Random(seed)
    floor = min(bound, best[0])
    for items, aliased in candidates:
        order = list(range(len(items)))
        order.sort(key=lambda i: (-items[i].size, items[i].first))
        current = _score(buffers, meta, _write_items(items, _place(items, order, False)))
        while time.perf_counter() - start < budget_s * (0.5 if not aliased else 1.0) and best[0] > floor \
                and len(items) > 1:
            trial = order[:]
            a, b = rng.randrange(len(trial)), rng.randrange(len(trial))
            trial.insert(b, trial.pop(a))
            best_fit = rng.random() < 0.5
            plan = _write_items(items, _place(items, trial, best_fit))
            score = _score(buffers, meta, plan)
            if score <= current:
                order, current = trial, score
                if score < best[0]:
                    best = (score, plan, "randomized search" + (", RESHAPE in place" if aliased else ""), aliased)

    score, plan, strategy, aliased = best
    if score >= greedy:
        return None
    return OfflinePlan(plan, score, greedy, bound, strategy, aliased, score <= bound,
                       time.perf_counter() - start)


def write_offline_plan(tflite: bytes, graph: ModelGraph, plan: OfflinePlan) -> bytes:
    """The model with the plan in its OfflineMemoryAllocation metadata (replacing any earlier plan)."""
    from ..graph import rewrite_flatbuffer as rewrite

    total = sum(len(sg.tensors) for sg in graph.subgraphs)
    offsets = [plan.offsets.get(i, ONLINE) for i in range(total)]
    raw = struct.pack(f"<3I{total}i", _FORMAT_VERSION, len(graph.subgraphs), total, *offsets)

    def edit(model) -> None:
        from ..graph import tflite_schema

        schema = tflite_schema()
        buf = schema.BufferT()
        buf.data = np.frombuffer(raw, dtype=np.uint8).copy()
        existing = [m for m in (model.metadata or []) if metadata_name(m) == OFFLINE_PLAN_METADATA]
        if existing:
            model.buffers[existing[0].buffer] = buf
            return
        model.buffers.append(buf)
        meta = schema.MetadataT()
        meta.name = OFFLINE_PLAN_METADATA
        meta.buffer = len(model.buffers) - 1
        model.metadata = [*(model.metadata or []), meta]

    return rewrite(tflite, edit)


def improve_model(tflite: bytes, graph: ModelGraph, pointer_bytes: int, kernel_library: str = "reference",
                  mcu: str = "", budget_s: float = DEFAULT_BUDGET_S) -> tuple[bytes, OfflinePlan] | None:
    """The model rewritten with a better execution order and/or an offline plan, or None when TFLM's own
    greedy plan of the model as converted cannot be beaten."""
    from dataclasses import replace

    from ..graph import read_graph
    from .schedule import better_order, reorder

    buffers, _ = planned_buffers(graph, pointer_bytes, kernel_library, mcu)
    greedy = arena_size(buffers, greedy_offsets(buffers))
    best: tuple[int, bytes, OfflinePlan | None, bool] | None = None
    plan = optimize(graph, pointer_bytes, kernel_library, mcu, budget_s)
    if plan is not None:
        best = (plan.head_bytes, write_offline_plan(tflite, graph, plan), plan, False)
    order = better_order(graph)
    if order is not None:
        moved = reorder(tflite, order)
        moved_graph = read_graph(moved, "the reordered model")
        moved_plan = optimize(moved_graph, pointer_bytes, kernel_library, mcu, budget_s)
        if moved_plan is not None:
            candidate = (moved_plan.head_bytes, write_offline_plan(moved, moved_graph, moved_plan), moved_plan, True)
        else:
            b2, _ = planned_buffers(moved_graph, pointer_bytes, kernel_library, mcu)
            head = arena_size(b2, greedy_offsets(b2))
            bound = peak_live_bytes(b2)
            candidate = (head, moved, OfflinePlan({}, head, greedy, bound, "TFLM greedy after reordering", 0,
                                                  head <= bound, 0.0, True), True)
        if best is None or candidate[0] < best[0]:
            best = candidate
    if best is None or best[0] >= greedy:
        return None
    _, data, plan, reordered = best
    plan = replace(plan, greedy_head_bytes=greedy, reordered=reordered,
                   strategy=plan.strategy + ("; ops reordered" if reordered and "reorder" not in plan.strategy else ""))
    return data, plan
