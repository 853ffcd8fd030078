"""Graph rewrites vs the converter's graph, per model and board, side by side in one run.

For each model and board: TFLM's own arena for the converter's graph, the best tinyflow reaches without
changing the graph (offline memory plan), and with the exact graph rewrite it chooses (patches, channel
groups, then the offline plan), with the ratio to TFLM's figure, the extra MACs, the op count and the
latency estimate's increase (the bound is 20 %). Models: MobileNetV1 0.25 at 96x96x3 (the VWW shape) and
96x96x1 (TFLM's person-detection shape), MobileNetV2 0.35 at 96x96 and the small corpus models, all built
and converted here; the real MLPerf Tiny models when ../shared/data/mlperf_tiny exists; TFLM's own
person_detect.tflite when you pass it (it is not shipped: `--person-detect PATH`).

    python benchmarks/rewrites.py [--mlperf DIR] [--person-detect PATH] [--cache DIR] [--boards a,b]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from tinyflow.boards import find_board
from tinyflow.graph import read_graph
from tinyflow.plan import assess, plan_graph
from tinyflow.plan.kernel_libraries import rules_id

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus

DEFAULT_MLPERF = Path(__file__).resolve().parents[2] / "shared" / "data" / "mlperf_tiny"
CORPUS = ("mobilenet_v1_025_vww", "person_detect", "mobilenet_v2_035_96", "resnet8", "ds_cnn", "patch_mix",
          "cnn_pool")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mlperf", type=Path, default=DEFAULT_MLPERF)
    ap.add_argument("--person-detect", type=Path, help="TFLM's person_detect.tflite (from the tflite-micro repo)")
    ap.add_argument("--cache", type=Path, default=Path(".bench-cache"))
    ap.add_argument("--boards", default="esp32s3,esp32,nano33ble,sim")
    args = ap.parse_args()
    models = [(f"corpus/{n}", corpus.cached_tflite(n, args.cache)) for n in CORPUS]
    if args.mlperf.is_dir():
        models += [(f"mlperf/{p.stem}", p.read_bytes()) for p in sorted(args.mlperf.glob("*.tflite"))]
    if args.person_detect:
        models.append(("tflm/person_detect", args.person_detect.read_bytes()))
    boards = [find_board(b) for b in args.boards.split(",")]
    print(f"{'model':30s} {'board':9s} {'TFLM':>9s} {'offline':>9s} {'rewritten':>9s} {'ratio':>6s} "
          f"{'+MACs':>6s} {'ops':>9s} {'+latency':>8s} {'s':>5s}  rewrite")
    for name, data in models:
        graph = read_graph(data, name)
        for board in boards:
            if graph.unsupported_ops:
                continue
            tflm = plan_graph(graph, board.pointer_bytes, rules_id(board), board.mcu).min_arena_bytes
            start = time.perf_counter()
            bp = assess(graph, board, tflite=data, offline=True)
            seconds = time.perf_counter() - start
            final = bp.memory.min_arena_bytes if bp.memory else tflm
            r = bp.rewrite
            offline = bp.unrewritten_min_bytes if r is not None else final
            macs = f"{r.extra_macs / max(r.original_macs, 1):6.1%}" if r else f"{'-':>6s}"
            ops = f"{r.original_ops:>4d}→{r.ops:<4d}" if r else f"{len(graph.main.operators):>4d}     "
            lat = f"{r.latency_increase:8.1%}" if r and r.latency_increase is not None else f"{'-':>8s}"
            fits = "" if bp.fits else " (does not fit)"
            print(f"{name:30s} {board.id[:9]:9s} {tflm:9,d} {offline:9,d} {final:9,d} {final / tflm:6.3f} {macs} "
                  f"{ops} {lat} {seconds:5.1f}  {r.rewrite.describe() if r else 'none'}{fits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
