"""TFLM's GreedyMemoryPlanner, ported exactly, plus the linear baseline and overlap checks.

Port of tensorflow/lite/micro/memory_planner/greedy_memory_planner.cc (tflite-micro 90b983c). The
order of ties matters for the result (a forward-stable sort gives 64,512 B instead of TFLM's 73,728 B on
the MLPerf VWW model), so the quirks are kept: online buffers are collected from the end of the add
order and bubble-sorted by size (stable, descending), offline-planned buffers keep their add order and
go first, each buffer takes the first gap between time-overlapping placed buffers, and a new entry goes
after placed entries with an equal offset.
"""

from __future__ import annotations

from dataclasses import dataclass

ONLINE = -1  # kOnlinePlannedBuffer


@dataclass(frozen=True)
class Buffer:
    size: int
    first: int  # first allocation scope in which it is live
    last: int  # last allocation scope in which it is live (inclusive)
    offline_offset: int = ONLINE

    def overlaps(self, other: Buffer) -> bool:
        return not (other.first > self.last or self.first > other.last)


def greedy_offsets(buffers: list[Buffer]) -> list[int]:
    """The offset TFLM's greedy planner gives each buffer, in add order."""
    n = len(buffers)
    if n == 0:
        return []
    offsets = [ONLINE] * n
    head: list[int] = []  # offline-planned, in add order
    tail: list[int] = []  # online, filled from the back as TFLM does
    for i, b in enumerate(buffers):
        if b.offline_offset == ONLINE:
            tail.append(i)
        else:
            head.append(i)
            offsets[i] = b.offline_offset
    online = list(reversed(tail))
    # ReverseSortInPlace is a stable bubble sort on descending size; Python's sort is stable too.
    online.sort(key=lambda i: -buffers[i].size)
    order = head + online

    # The offset-ordered singly linked list of placed buffers: entries are (offset, buffer id).
    entry_offset: list[int] = []
    entry_id: list[int] = []
    entry_next: list[int] = []
    first_entry = 0

    first_id = order[0]
    if buffers[first_id].offline_offset == ONLINE:
        offsets[first_id] = 0
    entry_offset.append(offsets[first_id])
    entry_id.append(first_id)
    entry_next.append(-1)

    def next_active(start: int | None, b: Buffer) -> int | None:
        candidate = first_entry if start is None else entry_next[start]
        if start is not None and candidate == -1:
            return None
        while True:
            if buffers[entry_id[candidate]].overlaps(b):
                return candidate
            if entry_next[candidate] == -1:
                return None
            candidate = entry_next[candidate]

    for buffer_id in order[1:]:
        wanted = buffers[buffer_id]
        candidate_offset = 0
        if wanted.offline_offset == ONLINE:
            prior: int | None = None
            while True:
                nxt = next_active(prior, wanted)
                if prior is not None:
                    end = entry_offset[prior] + buffers[entry_id[prior]].size
                    candidate_offset = max(candidate_offset, end)
                if nxt is None:
                    break
                if entry_offset[nxt] - candidate_offset >= wanted.size:
                    break
                prior = nxt
        else:
            candidate_offset = wanted.offline_offset
        offsets[buffer_id] = candidate_offset

        new_index = len(entry_offset)
        entry_offset.append(candidate_offset)
        entry_id.append(buffer_id)
        entry_next.append(-1)
        if entry_offset[first_entry] > candidate_offset:
            entry_next[new_index] = first_entry
            first_entry = new_index
        else:
            current = first_entry
            while True:
                nxt_index = entry_next[current]
                if nxt_index == -1:
                    entry_next[current] = new_index
                    break
                if entry_offset[nxt_index] > candidate_offset:
                    entry_next[new_index] = nxt_index
                    entry_next[current] = new_index
                    break
                current = nxt_index
    return offsets


def linear_offsets(buffers: list[Buffer]) -> list[int]:
    """TFLM's LinearMemoryPlanner: every buffer after the previous one, no reuse (the naive baseline)."""
    out, at = [], 0
    for b in buffers:
        out.append(at)
        at += b.size
    return out


def arena_size(buffers: list[Buffer], offsets: list[int]) -> int:
    return max((o + b.size for b, o in zip(buffers, offsets, strict=True)), default=0)


def overlapping_pairs(buffers: list[Buffer], offsets: list[int]) -> list[tuple[int, int]]:
    """Pairs of buffers that are live at the same time and share bytes: must be empty for a valid plan."""
    bad = []
    for i in range(len(buffers)):
        for j in range(i + 1, len(buffers)):
            a, b = buffers[i], buffers[j]
            if a.size and b.size and a.overlaps(b) and \
                    offsets[i] < offsets[j] + b.size and offsets[j] < offsets[i] + a.size:
                bad.append((i, j))
    return bad


def peak_live_bytes(buffers: list[Buffer]) -> int:
    """The lower bound of any placement: the most bytes live at one time."""
    if not buffers:
        return 0
    times = sorted({b.first for b in buffers} | {b.last for b in buffers})
    return max(sum(b.size for b in buffers if b.first <= t <= b.last) for t in times)
