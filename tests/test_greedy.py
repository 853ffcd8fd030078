"""The greedy planner port against TFLM's own planner test tables (greedy_memory_planner_test.cc)."""

from __future__ import annotations

import random

from tinyflow.plan.greedy import Buffer, arena_size, greedy_offsets, linear_offsets, overlapping_pairs, peak_live_bytes


def plan(specs):
    buffers = [Buffer(*s) for s in specs]
    offsets = greedy_offsets(buffers)
    assert overlapping_pairs(buffers, offsets) == []
    return offsets, arena_size(buffers, offsets)


def test_greedy_basics():
    assert plan([(10, 0, 1), (20, 2, 3)]) == ([0, 0], 20)


def test_greedy_medium():
    offsets, size = plan([(10, 0, 1), (20, 1, 2), (30, 2, 3), (40, 3, 4), (50, 0, 1)])
    assert offsets == [50, 70, 40, 0, 0] and size == 90


def test_overlap_case():
    assert plan([(100, 0, 1), (50, 2, 3), (20, 1, 2)])[1] == 120


def test_offline_offsets_are_kept_and_go_first():
    buffers = [Buffer(100, 0, 1, offline_offset=0), Buffer(50, 2, 3, offline_offset=0), Buffer(20, 1, 2)]
    offsets = greedy_offsets(buffers)
    assert offsets[:2] == [0, 0] and offsets[2] == 100


def test_ties_place_the_later_buffer_first():
    # Two equal buffers alive together: TFLM takes the later-added one first (offset 0).
    assert greedy_offsets([Buffer(16, 0, 1), Buffer(16, 0, 1)]) == [16, 0]


def test_random_plans_never_overlap_and_beat_linear():
    rng = random.Random(0)
    for _ in range(200):
        specs = []
        for _ in range(rng.randint(1, 30)):
            a = rng.randint(0, 20)
            specs.append((16 * rng.randint(1, 20), a, a + rng.randint(0, 5)))
        buffers = [Buffer(*s) for s in specs]
        offsets = greedy_offsets(buffers)
        assert overlapping_pairs(buffers, offsets) == []
        size = arena_size(buffers, offsets)
        assert peak_live_bytes(buffers) <= size <= arena_size(buffers, linear_offsets(buffers))
