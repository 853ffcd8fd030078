"""Execution orders that lower the peak of live activations, for graphs whose order is free (branches).

TFLM runs ops in flatbuffer order; any topological order of the same ops computes the same outputs. On a
chain there is one order; with branches (residual Add, Concatenate, several heads) finishing one branch
before starting the next can keep fewer tensors alive (Liberis & Lane 2019, "operator reordering"). The
candidates: the converter's order, a greedy list schedule that runs next the ready op leaving the fewest
live bytes, and seeded random topological orders; the lowest peak wins, only if strictly lower.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from ..graph import ModelGraph

_ORDER_SENSITIVE = {"VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE", "CALL_ONCE", "IF", "WHILE"}


def _align(n: int) -> int:
    return (n + 15) // 16 * 16


def _graph(graph: ModelGraph) -> tuple[list[set[int]], list[set[int]]]:
    sg = graph.main
    producer = {t: i for i, op in enumerate(sg.operators) for t in op.outputs}
    preds = [{producer[t] for t in op.inputs if t in producer} for op in sg.operators]
    succs: list[set[int]] = [set() for _ in sg.operators]
    for j, ps in enumerate(preds):
        for i in ps:
            succs[i].add(j)
    return preds, succs


def peak_live(graph: ModelGraph, order: list[int]) -> int:
    """Most activation bytes live at once when the ops run in ``order`` (TFLM's lifetime rules)."""
    sg = graph.main
    position = {op: k + 1 for k, op in enumerate(order)}
    first: dict[int, int] = {t: 0 for t in sg.inputs}
    last: dict[int, int] = {t: 0 for t in sg.inputs}
    for op_index in order:
        op = sg.operators[op_index]
        at = position[op_index]
        for t in op.outputs:
            first.setdefault(t, at)
            last[t] = max(last.get(t, at), at)
        for t in op.inputs:
            if t >= 0 and t in last:
                last[t] = max(last[t], at)
    for t in sg.outputs:
        last[t] = len(order)
    sizes = {t.index: _align(t.bytes) for t in sg.tensors if t.is_activation and t.bytes}
    return max((sum(s for t, s in sizes.items() if first.get(t, 0) <= k <= last.get(t, -1))
                for k in range(len(order) + 1)), default=0)


def _topological(preds: list[set[int]], succs: list[set[int]],
                 pick: Callable[[list[int], list[int]], int]) -> list[int]:
    """Kahn's algorithm; ``pick(ready, order_so_far)`` chooses which ready op runs next."""
    waiting = [len(p) for p in preds]
    ready = [i for i, w in enumerate(waiting) if w == 0]
    order: list[int] = []
    while ready:
        i = ready.pop(pick(ready, order))
        order.append(i)
        for j in succs[i]:
            waiting[j] -= 1
            if waiting[j] == 0:
                ready.append(j)
    return order


def _random_order(preds: list[set[int]], succs: list[set[int]], rng: random.Random) -> list[int]:
    return _topological(preds, succs, lambda ready, _: rng.randrange(len(ready)))


def _greedy_order(graph: ModelGraph, preds: list[set[int]], succs: list[set[int]]) -> list[int]:
    """Run next the ready op after which the fewest bytes are live (ties: converter order)."""

    def fewest_live(ready: list[int], order: list[int]) -> int:
        return min(range(len(ready)),
                   key=lambda k: (peak_live(graph, [*order, ready[k]]) if len(order) < 64 else 0, ready[k]))

    return _topological(preds, succs, fewest_live)


def better_order(graph: ModelGraph, tries: int = 200, seed: int = 0) -> list[int] | None:
    """A topological order with a strictly lower peak than the converter's, or None."""
    sg = graph.main
    if len(graph.subgraphs) > 1 or any(op.name in _ORDER_SENSITIVE for op in sg.operators):
        return None
    preds, succs = _graph(graph)
    if all(len(s) <= 1 for s in succs) and all(len(p) <= 1 for p in preds):
        return None  # a chain: only one order exists
    original = list(range(len(sg.operators)))
    best, best_peak = original, peak_live(graph, original)
    rng = random.Random(seed)
    candidates = [_greedy_order(graph, preds, succs)] + [_random_order(preds, succs, rng) for _ in range(tries)]
    for order in candidates:
        peak = peak_live(graph, order)
        if peak < best_peak:
            best, best_peak = order, peak
    return None if best is original else best


def reorder(tflite: bytes, order: list[int]) -> bytes:
    """The same model with its main subgraph's operators in ``order``."""
    from ..graph import rewrite_flatbuffer as rewrite

    def edit(model) -> None:
        ops = model.subgraphs[0].operators
        model.subgraphs[0].operators = [ops[i] for i in order]

    return rewrite(tflite, edit)
