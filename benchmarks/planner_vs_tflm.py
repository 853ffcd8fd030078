"""Planner vs the real TFLM interpreter, side by side in one run.

For every corpus model (built here) and, when the folder exists, the MLPerf Tiny reference models in
../shared/data/mlperf_tiny/: the smallest arena tinyflow predicts for the `sim` board, the smallest arena
with which the tflite-micro interpreter really builds (bisection, a forked process per trial), their
ratio (must be exactly 1.000), what TFLM's own report says (head + tail, which is not the answer for
small models), and the device figure for the ESP32-S3 with ESP-NN. Also the planner's run time.

    python benchmarks/planner_vs_tflm.py [--mlperf DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tinyflow.graph.reader import read_graph
from tinyflow.model.tflm_host import allocations, smallest_arena
from tinyflow.plan.planner import plan_graph

# The model corpus is test code (it is not shipped in the package): import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus

DEFAULT_MLPERF = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlperf_tiny"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlperf", type=Path, default=DEFAULT_MLPERF)
    ap.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    args = ap.parse_args()

    models = [(f"corpus/{n}", corpus.cached_tflite(n, args.cache)) for n in corpus.MODELS]
    if args.mlperf.is_dir():
        models += [(f"mlperf/{p.stem}", p.read_bytes()) for p in sorted(args.mlperf.glob("*.tflite"))]
    else:
        print(f"(no MLPerf Tiny folder at {args.mlperf}; corpus only)", file=sys.stderr)

    print(f"{'model':34s} {'planner':>9s} {'TFLM':>9s} {'ratio':>6s} {'head+tail':>10s} {'set by':28s} "
          f"{'ESP32-S3':>9s} {'plan ms':>7s}")
    exact = 0
    for name, data in models:
        g = read_graph(data, name)
        t0 = time.perf_counter()
        plan = plan_graph(g, 8)
        ms = (time.perf_counter() - t0) * 1000
        truth = smallest_arena(data, name)
        recorded = allocations(data, source=name).total_bytes
        s3 = plan_graph(g, 4, "esp-nn", "esp32s3").min_arena_bytes
        exact += plan.min_arena_bytes == truth
        binding = plan.binding.split(" (")[0] if plan.binding.startswith("plan") else plan.binding[:28]
        print(f"{name:34s} {plan.min_arena_bytes:9,d} {truth:9,d} {plan.min_arena_bytes / truth:6.3f} "
              f"{recorded:10,d} {binding:28s} {s3:9,d} {ms:7.1f}")
    print(f"\nexact on {exact}/{len(models)} models (ratio 1.000 = the planner's figure is TFLM's own minimum)")
    return 0 if exact == len(models) else 1


if __name__ == "__main__":
    raise SystemExit(main())
