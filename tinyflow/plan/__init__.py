"""Stage 4: what a model needs on a board: the exact TFLM arena, offline memory plans, budget, hazards, latency.

Takes a ``ModelGraph`` and a ``Board``; returns a ``BoardPlan`` (the ``MemoryPlan`` from a replay of TFLM's
allocator with the board's kernel-library scratch, flash and SRAM/PSRAM budget, hazards, latency estimate,
and, when it beats TFLM's planner, the model rewritten with an offline memory plan).
"""

from .assessment import BoardPlan, assess
from .kernel_libraries import arduino_kernels_note, build_versions, known_versions, with_kernels
from .planner import MemoryPlan, plan_graph

__all__ = ["BoardPlan", "MemoryPlan", "arduino_kernels_note", "assess", "build_versions", "known_versions",
           "plan_graph", "with_kernels"]
