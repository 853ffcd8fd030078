"""Stage 4: what a model needs on a board: the exact TFLM arena, offline memory plans, budget, hazards, latency.

Takes a ``ModelGraph`` and a ``Board``; returns a ``BoardPlan`` (the ``MemoryPlan`` from a replay of TFLM's
allocator with the board's kernel-library scratch, flash and SRAM/PSRAM budget, hazards, latency estimate,
and, when it beats TFLM's planner, the model rewritten with an offline memory plan).
"""

from .assessment import BoardPlan, assess
from .planner import MemoryPlan, plan_graph

__all__ = ["BoardPlan", "MemoryPlan", "assess", "plan_graph"]
