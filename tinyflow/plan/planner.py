"""Plan the TFLM tensor arena exactly as TFLM does, and find the smallest arena with which it builds.

TFLM fills one arena from both ends: persistent data from the top (the "tail": allocator objects, eval
tensors, node structs, builtin params, kernel OpData, model I/O tensors) and, from the bottom, the scratch
request list, Prepare's temporary tensors, the planner's working memory and finally the planned head
(activations and kernel scratch buffers placed by the greedy planner). This module rebuilds the exact
sequence of allocator calls from the model (``kernels`` supplies each kernel's share) and replays them
against the allocator's own checks (single_arena_buffer_allocator.cc), which gives the smallest
``arena_size`` with which ``AllocateTensors()`` succeeds, not just the recorded head + tail: small
models need room for planning, wide per-channel layers for Prepare's temporaries.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from ..errors import InputError
from ..graph import OFFLINE_PLAN_METADATA, ModelGraph, Subgraph, Tensor
from .greedy import ONLINE, Buffer, arena_size, greedy_offsets, peak_live_bytes
from .kernel_libraries import adjust_init, extra_prepare
from .kernels import OpView, UnsupportedOp, builtin_data, init_events, prepare_events
from .tflm_abi import Abi, abi_for

ALIGN = 16  # MicroArenaBufferAlignment()
_CONTROL_FLOW = {"IF": ("thenSubgraphIndex", "elseSubgraphIndex"), "WHILE": ("condSubgraphIndex", "bodySubgraphIndex"),
                 "CALL_ONCE": ("initSubgraphIndex",)}


def _up(x: int, a: int) -> int:
    return -(-x // a) * a


def _down(x: int, a: int) -> int:
    return x // a * a


@dataclass(frozen=True)
class PlannedBuffer:
    """One buffer of the planned head: an activation tensor or a kernel scratch buffer."""

    name: str
    size: int  # aligned to 16, as TFLM plans it
    first: int  # allocation scope (op index + 1; 0 = model input)
    last: int
    offset: int
    tensor: int | None  # tensor index (main subgraph: plain index) or None for scratch
    op: int | None  # for scratch buffers: the op that requested it
    flat_tensor: int | None = None  # index over all subgraphs' tensors, as OfflineMemoryAllocation counts them


@dataclass(frozen=True)
class MemoryPlan:
    min_arena_bytes: int  # the smallest arena_size with which the interpreter builds
    head_bytes: int  # the planned non-persistent area
    tail_bytes: int  # persistent area at the end, for the best arena size
    binding: str  # which check sets the minimum
    buffers: tuple[PlannedBuffer, ...]
    lower_bound_bytes: int  # most bytes live at one time: no placement can do better
    tail_breakdown: dict[str, int]
    scratch_bytes: int  # total kernel scratch requested (aligned)
    abi: str
    kernel_library: str

    @property
    def greedy_offsets(self) -> list[int]:
        return [b.offset for b in self.buffers]


# ---- events of the whole allocation sequence --------------------------------------------------------


@dataclass
class _Seq:
    events: list[tuple] = field(default_factory=list)
    where: list[str] = field(default_factory=list)
    category: list[str] = field(default_factory=list)

    def add(self, event: tuple, where: str, category: str = "") -> None:
        self.events.append(event)
        self.where.append(where)
        self.category.append(category)


def offline_offsets(graph: ModelGraph) -> list[int] | None:
    """The OfflineMemoryAllocation metadata, one int32 offset per tensor (all subgraphs), -1 = plan online.
    Its header and length were checked when the model was read (graph/validate.py)."""
    raw = graph.metadata.get(OFFLINE_PLAN_METADATA)
    if raw is None:
        return None
    n = struct.unpack_from("<I", raw, 8)[0]
    return list(struct.unpack_from(f"<{n}i", raw, 12))


def _views(graph: ModelGraph, abi: Abi) -> list[tuple[Subgraph, list[OpView]]]:
    """Every subgraph's ops as their kernels see them, in the order TFLM prepares them."""
    # MicroResourceVariables allocates a variable's buffer at its first ASSIGN_VARIABLE, and only when the
    # VAR_HANDLE naming it was prepared before (which set the resource id on its output).
    handles: dict[tuple[int, int], tuple[str, str]] = {}
    assigned: set[tuple[str, str]] = set()
    views = []
    for sg in graph.subgraphs:
        vs = []
        for op in sg.operators:
            if op.name == "VAR_HANDLE":
                key = (str(op.options.get("container") or ""), str(op.options.get("sharedName") or ""))
                handles.update({(sg.index, t): key for t in op.outputs})
            first = False
            if op.name == "ASSIGN_VARIABLE":
                key = handles.get((sg.index, op.inputs[0]))
                first = key is not None and key not in assigned
                if key is not None:
                    assigned.add(key)
            vs.append(OpView(op, tuple(sg.tensors[i] if i >= 0 else None for i in op.inputs),
                             tuple(sg.tensors[i] for i in op.outputs), abi, allocates_resource=first))
        views.append((sg, vs))
    return views


def _var_handle_outputs(graph: ModelGraph) -> set[tuple[int, int]]:
    # VAR_HANDLE's Prepare points its output at the kernel's OpData, so TFLM does not plan it.
    return {(sg.index, t) for sg in graph.subgraphs for op in sg.operators if op.name == "VAR_HANDLE"
            for t in op.outputs}


def _resource_variable_count(graph: ModelGraph) -> int:
    names = {op.options.get("sharedName", "") for sg in graph.subgraphs for op in sg.operators
             if op.name == "VAR_HANDLE"}
    return len(names)


def _lifetimes(graph: ModelGraph, scratch: list[tuple[int, int, int]]) -> tuple[dict, list[tuple[int, int]]]:
    """TFLM's AllocationInfoBuilder::MarkAllocationLifetimes: tensor and scratch lifetimes in allocation scopes."""
    first: dict[tuple[int, int], int] = {}
    last: dict[tuple[int, int], int] = {}
    s_life = [(-1, -1)] * len(scratch)
    scope = 0

    def created(key: tuple[int, int]) -> None:
        first.setdefault(key, scope)

    def mark(si: int) -> None:
        nonlocal scope
        sg = graph.subgraphs[si]
        for t in sg.inputs:
            created((si, t))
            last[(si, t)] = scope
        for i, op in enumerate(sg.operators):
            scope += 1
            for t in op.outputs:
                created((si, t))
            start = scope
            for key in _CONTROL_FLOW.get(op.name, ()):
                sub = op.options.get(key)
                if sub is not None and sub >= 0:
                    scope += 1
                    mark(int(sub))
            for t in op.inputs:
                if t >= 0:
                    last[(si, t)] = scope
            for t in op.outputs:
                last[(si, t)] = scope
            for k, (ssi, node, _) in enumerate(scratch):
                if ssi == si and node == i:
                    f = s_life[k][0] if s_life[k][0] != -1 else start
                    s_life[k] = (f, scope)
        for t in sg.outputs:
            created((si, t))
            last[(si, t)] = scope

    mark(0)
    life = {key: (first.get(key, -1), last.get(key, -1)) for key in set(first) | set(last)}
    return life, s_life


def _needs_allocating(t: Tensor, key: tuple[int, int], offline: int, excluded: set) -> bool:
    if t.is_variable:
        return offline != ONLINE  # an offline-planned variable is placed by the plan instead of the tail
    return not t.is_constant and t.bytes != 0 and key not in excluded


def _planned_buffers(graph: ModelGraph, scratch: list[tuple[int, int, int]]) -> tuple[list[Buffer], list[tuple]]:
    offsets = offline_offsets(graph)
    life, s_life = _lifetimes(graph, scratch)
    excluded = _var_handle_outputs(graph)
    buffers, meta = [], []
    flat = 0
    for sg in graph.subgraphs:
        for t in sg.tensors:
            key = (sg.index, t.index)
            off = offsets[flat] if offsets else ONLINE
            flat += 1
            if _needs_allocating(t, key, off, excluded):
                f, la = life.get(key, (-1, -1))
                buffers.append(Buffer(_up(t.bytes, ALIGN), f, la, off))
                meta.append((t.name, t.index if sg.index == 0 else None, None, flat - 1))
    for (ssi, node, size), (f, la) in zip(scratch, s_life, strict=True):
        buffers.append(Buffer(_up(size, ALIGN), f, la))
        op_name = graph.subgraphs[ssi].operators[node].name
        meta.append((f"scratch of op {node} ({op_name})", None, node if ssi == 0 else None, None))
    return buffers, meta


def _io_events(seq: _Seq, sg: Subgraph, abi: Abi) -> None:
    for kind, indices in (("input", sg.inputs), ("output", sg.outputs)):
        seq.add(("P", abi.pointer * len(indices), ALIGN), f"model {kind} tensor array", "model I/O tensors")
        for i in indices:
            t = sg.tensors[i]
            seq.add(("P", *abi.tflite_tensor), f"model {kind} '{t.name}'", "model I/O tensors")
            if t.channels:
                seq.add(("P", *abi.affine_quantization), f"model {kind} '{t.name}'", "model I/O tensors")
                seq.add(("P", 4 + 4 * t.channels, 4), f"model {kind} '{t.name}'", "model I/O tensors")


def _temp_tensor(seq: _Seq, t: Tensor | None, abi: Abi, where: str) -> None:
    if t is None:  # an omitted optional input: no temporary tensor
        return
    seq.add(("T", *abi.tflite_tensor, "tensor"), where)
    if t.channels:
        seq.add(("T", *abi.affine_quantization, "aq"), where)
        seq.add(("T", 4 + 4 * t.channels, 4, "zp"), where)


def build_sequence(graph: ModelGraph, abi: Abi, kernel_library: str,
                   mcu: str) -> tuple[_Seq, list[Buffer], list[tuple]]:
    """Every allocator call of model loading and AllocateTensors, in order, plus the planned buffers."""
    seq = _Seq()
    for size, align in abi.allocator_objects:
        seq.add(("P", size, align), "allocator objects", "allocator objects")
    resources = _resource_variable_count(graph)
    if resources:
        seq.add(("P", abi.resource_variables[0], ALIGN), "resource variables", "resource variables")
        seq.add(("P", abi.resource_variables[1] * resources, ALIGN), "resource variables", "resource variables")
    seq.add(("P", *abi.builtin_allocator), "builtin data allocator", "allocator objects")
    seq.add(("Z", abi.head_list_initial, abi.scratch_request[1], "init"), "scratch request list")
    seq.add(("P", abi.subgraph_allocations[0] * len(graph.subgraphs), abi.subgraph_allocations[1]),
            "subgraph allocations", "eval tensors")
    for sg in graph.subgraphs:
        seq.add(("P", abi.eval_tensor[0] * len(sg.tensors), abi.eval_tensor[1]), "TfLiteEvalTensor array",
                "eval tensors")
    for sg in graph.subgraphs:
        seq.add(("P", abi.node_and_registration[0] * len(sg.operators), abi.node_and_registration[1]),
                "NodeAndRegistration array", "node structs")

    views = _views(graph, abi)
    for _, vs in views:
        for v in vs:
            bd = builtin_data(v.name, abi)
            if bd is not None:
                seq.add(("P", *bd), f"op {v.op.index} ({v.name}) params", "builtin params")
    for _, vs in views:
        for v in vs:
            for e in adjust_init(v, kernel_library, init_events(v)):
                seq.add(("P", e[1], ALIGN), f"op {v.op.index} ({v.name}) Init", "kernel data")

    scratch: list[tuple[int, int, int]] = []
    for sg, vs in views:
        for v in vs:
            where = f"op {v.op.index} ({v.name}) Prepare"
            try:
                events = prepare_events(v) + extra_prepare(v, kernel_library, mcu)
            except UnsupportedOp:
                raise InputError(f"op {v.op.index} ({v.name}): tinyflow's planner has no allocation model for this "
                                 "op yet, so it cannot size the arena exactly") from None
            for e in events:
                if e[0] == "T":
                    _temp_tensor(seq, (v.ins if e[1] == "in" else v.outs)[e[2]] if e[2] < len(
                        v.ins if e[1] == "in" else v.outs) else None, abi, where)
                elif e[0] == "P":
                    seq.add(("P", e[1], ALIGN), where, "kernel data")
                elif e[0] == "S":
                    scratch.append((sg.index, v.op.index, e[1]))
                elif e[0] == "TB":
                    seq.add(("T", e[1], e[2], None), where)
            seq.add(("RESET",), where)
            seq.add(("Z", abi.scratch_request[0] * (len(scratch) + 12), abi.scratch_request[1], "soft"), where)

    if scratch:
        seq.add(("P", abi.scratch_handle[0] * len(scratch), abi.scratch_handle[1]), "scratch buffer handles",
                "scratch handles")
    total_tensors = sum(len(sg.tensors) for sg in graph.subgraphs)
    seq.add(("T", abi.pointer * len(graph.subgraphs), abi.pointer, None), "planning")
    seq.add(("T", abi.allocation_info[0] * (total_tensors + len(scratch)), abi.allocation_info[1], None), "planning")
    offsets = offline_offsets(graph)
    flat = 0
    for sg in graph.subgraphs:
        for t in sg.tensors:
            if t.is_variable and (offsets is None or offsets[flat] == ONLINE):
                seq.add(("P", t.bytes, ALIGN), f"variable tensor '{t.name}'", "variable tensors")
            flat += 1
    buffers, meta = _planned_buffers(graph, scratch)
    seq.add(("PLAN", len(buffers)), "planning")
    seq.add(("FREE_TEMPS",), "planning")
    seq.add(("Z", 0, 1, "dealloc"), "planning")
    head = arena_size(buffers, greedy_offsets(buffers))
    seq.add(("Z", head, ALIGN, "reserve"), "planned head")
    _io_events(seq, graph.main, abi)
    return seq, buffers, meta


# ---- replay ---------------------------------------------------------------------------------------------


def _replay(seq: _Seq, abi: Abi, rho: int) -> tuple[int, int, int, dict[str, int]]:
    """For an arena whose end is at rho (mod 16) and start 16-aligned: (lower bound on N, index of the event
    that sets it, final tail usage, tail bytes by category)."""
    end = (1 << 40) | rho
    u = head = temp = ntemp = 0
    last_aq: int | None = None
    bound, binder = 0, 0
    cats: dict[str, int] = {}

    def need(value: int, i: int) -> None:
        nonlocal bound, binder
        if value > bound:
            bound, binder = value, i

    for i, e in enumerate(seq.events):
        kind = e[0]
        if kind == "P":
            nu = end - _down(end - u - e[1], e[2])
            need(nu + head, i)
            if ntemp:
                # A persistent buffer may only run over the topmost temporary quantization struct's unused end.
                floor = last_aq + abi.affine_quantization_live_bytes if last_aq is not None else temp
                need(nu + floor, i)
            cat = seq.category[i] or "other"
            cats[cat] = cats.get(cat, 0) + nu - u
            u = nu
        elif kind == "T":
            r = _up(temp, e[2])
            need(u + r + e[1], i)
            temp = r + e[1]
            ntemp += 1
            if e[3] == "aq":
                last_aq = r
            elif e[3] != "zp":
                last_aq = None
        elif kind == "RESET":
            ntemp, temp, last_aq = 0, head, None
        elif kind == "Z":
            size, align, role = e[1], e[2], e[3]
            if role != "soft":  # the per-op resize's failure is ignored by TFLM (never binding)
                need(u + _up(0, align) + size, i)
            head = temp = _up(0, align) + size
        elif kind == "PLAN":
            need(u + _up(_up(temp, ALIGN) + abi.planner_bytes_per_buffer * e[1], ALIGN), i)
            temp = _up(temp, ALIGN)
            ntemp += 1
        elif kind == "FREE_TEMPS":
            ntemp, temp, last_aq = 0, head, None
    return bound, binder, u, cats


def _binding_label(seq: _Seq, i: int) -> str:
    where = seq.where[i]
    kind = seq.events[i][0]
    if kind == "PLAN":
        return "planning (the greedy planner's working memory)"
    if "Prepare" in where:
        return f"{where} (temporary tensors)"
    if (kind == "Z" and seq.events[i][3] == "reserve") or "model " in where:
        return "final head + tail"
    return where


def planned_buffers(graph: ModelGraph, pointer_bytes: int, kernel_library: str = "reference",
                    mcu: str = "") -> tuple[list[Buffer], list[tuple]]:
    """The buffers TFLM's planner gets for this build, in its add order, with (name, tensor, op, flat index)."""
    _, buffers, meta = build_sequence(graph, abi_for(pointer_bytes), kernel_library, mcu)
    return buffers, meta


def plan_graph(graph: ModelGraph, pointer_bytes: int, kernel_library: str = "reference",
               mcu: str = "", exact: bool = True) -> MemoryPlan:
    """The exact arena plan for a TFLM build with this pointer size and kernel library (see module doc).

    ``exact=False`` replays the allocator for one arena-end alignment instead of all 16: a figure at most a
    few alignment bytes above the exact one, for searches that compare many candidates and plan the chosen
    one exactly."""
    abi = abi_for(pointer_bytes)
    seq, buffers, meta = build_sequence(graph, abi, kernel_library, mcu)
    best = None
    for rho in range(ALIGN if exact else 1):
        bound, binder, u, cats = _replay(seq, abi, rho)
        n = bound + (rho - bound) % ALIGN
        if best is None or n < best[0]:
            best = (n, binder, u, cats)
    n, binder, u, cats = best
    offsets = greedy_offsets(buffers)
    planned = tuple(PlannedBuffer(name, b.size, b.first, b.last, o, ti, op, flat)
                    for b, o, (name, ti, op, flat) in zip(buffers, offsets, meta, strict=True))
    scratch = sum(b.size for b in planned if b.tensor is None and b.op is not None)
    return MemoryPlan(
        min_arena_bytes=n,
        head_bytes=arena_size(buffers, offsets),
        tail_bytes=u,
        binding=_binding_label(seq, binder),
        buffers=planned,
        lower_bound_bytes=peak_live_bytes(buffers),
        tail_breakdown=cats,
        scratch_bytes=scratch,
        abi=abi.name,
        kernel_library=kernel_library,
    )
