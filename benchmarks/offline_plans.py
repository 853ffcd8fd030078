"""Offline memory plans vs TFLM's greedy planner, per model, side by side in one run.

For the planner corpus and the MLPerf-Tiny-shaped models (built here), plus the real MLPerf Tiny reference
models when ../shared/data/mlperf_tiny exists: the lower bound (most bytes live at once), TFLM's greedy
head, tinyflow's plan, their ratio, and the search time; for the host (sim, reference kernels) and the
ESP32-S3 with ESP-NN scratch. Ratios below 1.000 are savings; 1.000 means TFLM's plan was already the best
found (tinyflow then keeps it: never worse).

    python benchmarks/offline_plans.py [--mlperf DIR] [--cache DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tinyflow.graph.reader import read_graph
from tinyflow.plan.placement import improve_model
from tinyflow.plan.planner import plan_graph

# The model corpus is test code (it is not shipped in the package): import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus

DEFAULT_MLPERF = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlperf_tiny"
TARGETS = {"sim": (8, "reference", ""), "esp32s3": (4, "esp-nn", "esp32s3")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlperf", type=Path, default=DEFAULT_MLPERF)
    ap.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    args = ap.parse_args()
    names = list(dict.fromkeys([*corpus.PLANNER_CORPUS, *corpus.MLPERF_SHAPED, "branches", "resnet8"]))
    models = [(f"corpus/{n}", corpus.cached_tflite(n, args.cache)) for n in names]
    if args.mlperf.is_dir():
        models += [(f"mlperf/{p.stem}", p.read_bytes()) for p in sorted(args.mlperf.glob("*.tflite"))]
    print(f"{'model':32s} {'target':8s} {'bound':>8s} {'TFLM':>8s} {'tinyflow':>9s} {'ratio':>6s} "
          f"{'search s':>8s}  how")
    worse = 0
    for name, data in models:
        graph = read_graph(data, name)
        for target, (ptr, lib, mcu) in TARGETS.items():
            start = time.perf_counter()
            improved = improve_model(data, graph, ptr, lib, mcu)
            seconds = time.perf_counter() - start
            greedy = plan_graph(graph, ptr, lib, mcu)
            if improved is None:
                head, how = greedy.head_bytes, "TFLM's plan kept"
            else:
                head = plan_graph(read_graph(improved[0]), ptr, lib, mcu).head_bytes
                how = improved[1].strategy
            worse += head > greedy.head_bytes
            print(f"{name:32s} {target:8s} {greedy.lower_bound_bytes:8,d} {greedy.head_bytes:8,d} {head:9,d} "
                  f"{head / greedy.head_bytes:6.3f} {seconds:8.2f}  {how}")
    print(f"\nmodels where tinyflow's plan is worse than TFLM's: {worse} (must be 0)")
    return 1 if worse else 0


if __name__ == "__main__":
    raise SystemExit(main())
