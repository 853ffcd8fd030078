"""Choose a graph rewrite for a board: the smallest exact arena whose latency cost stays under a bound.

The rewrite stage knows which rewrites keep every output bit-identical (patches of a stage of ops, channel
groups of a convolution); which one pays is a property of the board (its kernel library's scratch, its
pointer size), so it is chosen here, by the planner's exact arena of each candidate. The search is a hill
climb from the converter's graph: at each step the ops at the current peak (most bytes live) get their
neighbours tried (split the conv into more groups; patch a stage around the op with a few grids; regrid,
extend or cut an existing stage in two), and the best candidate within the latency bound is kept while it
lowers the arena. The latency cost is the board's latency estimate; on a board without a cost table
(the simulated board) it is the MAC count.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

from ..boards import Board
from ..errors import InputError
from ..graph import ModelGraph, graph_from_model, read_graph, unpack_model
from ..rewrite import (
    Candidates,
    PatchLayout,
    PatchPlan,
    Rewrite,
    apply_rewrite,
    candidates,
    editable_copy,
    patch_layout,
    rewrite_model,
)
from .kernel_libraries import rules_id
from .latency import estimate
from .planner import MemoryPlan, plan_graph

DEFAULT_MAX_LATENCY_INCREASE = 0.20
# A rewrite must pay for its extra ops: below this share of the arena it is not worth them.
MIN_SAVING = 0.02
# A count, not a time: the choice must not depend on how busy the machine is.
DEFAULT_MAX_CANDIDATES = 400
_GRIDS = ((2, 2), (2, 1), (1, 2), (3, 2), (2, 3), (3, 3), (4, 1), (4, 2), (4, 4))
_FIRST_GRIDS = ((2, 1), (2, 2))
_MAX_STAGE_OPS = 12
_MAX_GROUPS = 8  # TFLM's CONCATENATION takes at most 10 inputs (kMaxInputNum)


@dataclass(frozen=True)
class RewriteChoice:
    """The rewrite chosen for a board, with what it costs and saves (arenas are TFLM's own plan of each
    graph; the offline plan, found afterwards, is reported beside it)."""

    rewrite: Rewrite
    tflite: bytes  # the rewritten model (weights 16-aligned), without an offline plan
    original_arena_bytes: int
    arena_bytes: int
    original_macs: int
    macs: int
    original_ops: int
    ops: int
    original_latency_us: float | None  # the board's estimate; None on a board without a cost table
    latency_us: float | None
    max_latency_increase: float
    layouts: tuple[PatchLayout, ...]
    evaluated: int
    seconds: float

    @property
    def extra_macs(self) -> int:
        return self.macs - self.original_macs

    @property
    def latency_increase(self) -> float | None:
        if self.original_latency_us is None or self.latency_us is None or not self.original_latency_us:
            return None
        return self.latency_us / self.original_latency_us - 1

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.rewrite.describe(),
            "patches": [{"first_op": p.start, "ops": p.ops, "grid": [p.rows, p.cols], "stride_slack": p.stride_slack,
                         "input_shape": list(lay.input_shape), "output_shape": list(lay.output_shape),
                         "input_regions": [list(r) for r in lay.input_regions],
                         "output_regions": [list(r) for r in lay.output_regions]}
                        for p, lay in zip(self.rewrite.patches, self.layouts, strict=True)],
            "splits": [{"op": i, "groups": g} for i, g in self.rewrite.splits],
            "original_arena_bytes": self.original_arena_bytes,
            "arena_bytes": self.arena_bytes,
            "original_macs": self.original_macs,
            "macs": self.macs,
            "extra_macs": self.extra_macs,
            "original_ops": self.original_ops,
            "ops": self.ops,
            "original_latency_estimate_us": None if self.original_latency_us is None
            else round(self.original_latency_us, 1),
            "latency_estimate_us": None if self.latency_us is None else round(self.latency_us, 1),
            "latency_increase": None if self.latency_increase is None else round(self.latency_increase, 4),
            "max_latency_increase": self.max_latency_increase,
            "candidates_evaluated": self.evaluated,
            "search_seconds": round(self.seconds, 2),
        }


@dataclass(frozen=True)
class _Scored:
    rewrite: Rewrite
    arena: int
    cost: float  # latency estimate (us) or MACs
    graph: ModelGraph
    memory: MemoryPlan
    origins: tuple[int, ...]


@dataclass
class _Search:
    tflite: bytes
    model: Any  # the unpacked original: each candidate edits a copy, planned without packing it
    board: Board
    cands: Candidates
    limit: int
    seen: dict[Rewrite, _Scored | None] = field(default_factory=dict)

    def cost(self, graph: ModelGraph) -> float:
        lat = estimate(graph, self.board)
        return lat.total_us if lat is not None else float(graph.total_macs)

    def score(self, rw: Rewrite) -> _Scored | None:
        if rw in self.seen:
            return self.seen[rw]
        try:
            model = editable_copy(self.model)
            origins = rewrite_model(model, rw)
            graph = graph_from_model(model, len(self.tflite), source="the rewritten model", validate=False)
            mem = plan_graph(graph, self.board.pointer_bytes, rules_id(self.board), self.board.mcu, exact=False)
            if any(t.bytes <= 0 for t in graph.main.tensors if not t.is_constant and t.shape):
                raise ValueError("an empty tensor")  # never a real saving: TFLM refuses such a model
            s = _Scored(rw, mem.min_arena_bytes, self.cost(graph), graph, mem, origins)
        except ValueError:  # a grid that does not divide this stage's output
            s = None
        self.seen[rw] = s
        return s

    def exhausted(self) -> bool:
        return len(self.seen) >= self.limit


def _peak_ops(s: _Scored, count: int = 3) -> list[int]:
    """The original ops computed at the scopes with the most bytes live, most first."""
    n = len(s.graph.main.operators)
    live = [0] * (n + 1)
    for b in s.memory.buffers:
        for scope in range(max(b.first, 0), min(b.last, n) + 1):
            live[scope] += b.size
    out: list[int] = []
    for scope in sorted(range(1, n + 1), key=lambda x: -live[x]):
        origin = s.origins[scope - 1]
        if origin >= 0 and origin not in out:
            out.append(origin)
        if len(out) == count:
            break
    return out


def _stage_of(rw: Rewrite, op: int) -> PatchPlan | None:
    return next((p for p in rw.patches if p.start <= op < p.stop), None)


def _free(rw: Rewrite, start: int, stop: int, ignore: PatchPlan | None = None) -> bool:
    if any(start <= i < stop for i, _ in rw.splits):
        return False
    return all(p is ignore or p.stop <= start or p.start >= stop for p in rw.patches)


def _with_stage(rw: Rewrite, new: tuple[PatchPlan, ...], old: PatchPlan | None = None) -> Rewrite:
    kept = tuple(p for p in rw.patches if p is not old)
    return replace(rw, patches=tuple(sorted(kept + new, key=lambda p: p.start)))


def _slack_options(board: Board) -> tuple[bool, ...]:
    # Only ESP-NN's ESP32-S3 kernels copy a strided op's input when VALID leaves a remainder
    return (False, True) if board.kernel_library == "esp-nn" and board.mcu == "esp32s3" else (False,)


def _neighbours(search: _Search, rw: Rewrite, op: int) -> list[Rewrite]:
    cands, board = search.cands, search.board
    out: list[Rewrite] = []
    stage = _stage_of(rw, op)
    cout = dict(cands.splittable).get(op, 0)
    if stage is None and cout:  # (a split op is never inside a stage: _free keeps stages off split ops)
        have = dict(rw.splits).get(op, 1)
        for g in (2, 4, _MAX_GROUPS):
            if g > have and cout % g == 0 and cout // g >= 4:
                splits = tuple(sorted({**dict(rw.splits), op: g}.items()))
                out.append(replace(rw, splits=splits))
    valid = set(cands.stages)
    if stage is None:
        for start, k in cands.stages:
            if start <= op < start + k and op - start <= 4 and k <= _MAX_STAGE_OPS and _free(rw, start, start + k):
                # the coarsest grid first: later steps regrid the stage that pays
                out += [_with_stage(rw, (PatchPlan(k, r, c, False, start),)) for r, c in _FIRST_GRIDS]
        return out
    # an existing stage: another grid, one op more or less at either end, or cut in two
    for r, c in _GRIDS:
        for sl in _slack_options(board):
            if (r, c, sl) != (stage.rows, stage.cols, stage.stride_slack):
                out.append(_with_stage(rw, (replace(stage, rows=r, cols=c, stride_slack=sl),), stage))
    for start, stop in ((stage.start - 1, stage.stop), (stage.start + 1, stage.stop),
                        (stage.start, stage.stop + 1), (stage.start, stage.stop - 1)):
        if (start, stop - start) in valid and _free(rw, start, stop, stage):
            out.append(_with_stage(rw, (replace(stage, start=start, ops=stop - start),), stage))
    for mid in range(stage.start + 1, stage.stop):
        a, b = (stage.start, mid - stage.start), (mid, stage.stop - mid)
        if a in valid and b in valid:
            for r, c in _FIRST_GRIDS:
                first = replace(stage, ops=a[1])
                second = PatchPlan(b[1], r, c, stage.stride_slack, mid)
                out.append(_with_stage(rw, (first, second), stage))
    return out


def choose_rewrite(tflite: bytes, graph: ModelGraph, board: Board,
                   max_latency_increase: float = DEFAULT_MAX_LATENCY_INCREASE,
                   max_candidates: int = DEFAULT_MAX_CANDIDATES) -> RewriteChoice | None:
    """The rewrite with the smallest arena on ``board`` whose latency cost is at most ``1 +
    max_latency_increase`` times the original's, or None when no exact rewrite lowers the arena."""
    started = time.perf_counter()
    cands = candidates(tflite)
    if not cands.stages and not cands.splittable:
        return None
    search = _Search(tflite, unpack_model(tflite), board, cands, max_candidates)
    base = search.score(Rewrite())
    if base is None:
        return None
    allowed = base.cost * (1 + max_latency_increase)
    current = base
    while not search.exhausted():
        best = current
        for op in _peak_ops(current):
            for rw in _neighbours(search, current.rewrite, op):
                s = search.score(rw)
                if s is not None and s.cost <= allowed and (s.arena, s.cost) < (best.arena, best.cost):
                    best = s
                if search.exhausted():
                    break
            if best is not current:
                break  # climb from the first peak op that improves: the next step looks at the new peak
        if best is current:
            break
        current = best
    if current is base or current.arena > base.arena * (1 - MIN_SAVING):
        return None
    data = apply_rewrite(tflite, current.rewrite)
    try:
        rewritten = read_graph(data, "the rewritten model")  # validated, as any model tinyflow reads
    except InputError:  # a rewrite the validator refuses is a bug in it: the converter's graph is kept
        return None
    exact = [plan_graph(g, board.pointer_bytes, rules_id(board), board.mcu).min_arena_bytes for g in (graph, rewritten)]
    if exact[1] > exact[0] * (1 - MIN_SAVING):
        return None
    lat0, lat1 = estimate(graph, board), estimate(rewritten, board)
    layouts = tuple(patch_layout(tflite, p) for p in current.rewrite.patches)
    return RewriteChoice(current.rewrite, data, exact[0], exact[1], graph.total_macs,
                         rewritten.total_macs, len(graph.main.operators), len(rewritten.main.operators),
                         None if lat0 is None else lat0.total_us, None if lat1 is None else lat1.total_us,
                         max_latency_increase, layouts, len(search.seen), time.perf_counter() - started)


def same_outputs(original: bytes, rewritten: bytes, graph: ModelGraph, samples: int = 2, seed: int = 0) -> bool:
    """Whether the host TFLM gives bit-identical outputs for both models on random inputs: the rewrite's
    exactness, checked on the real interpreter before a plan relies on it."""
    import numpy as np

    from ..graph import random_values
    from ..model import run_model

    rng = np.random.default_rng(seed)
    # run_model invokes once per sample: the first axis counts samples, each of the tensor's shape
    inputs = [random_values(t.dtype, (samples, *t.shape[1:]) if t.shape and t.shape[0] == 1 else (1, *t.shape), rng)
              for t in graph.input_tensors()]
    a, b = run_model(original, inputs), run_model(rewritten, inputs)
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
