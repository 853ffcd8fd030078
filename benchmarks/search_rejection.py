"""Trials per minute of `tinyflow search` with and without the rejection before training, side by side.

The same space (ds_cnn on the bundled digits), the same budget, the same seed and the same number of
trials, one run each, in this process: with the rejection an infeasible candidate costs one untrained
conversion and a plan; without it, every candidate is trained, converted and evaluated before its budget
is judged. Both runs sample the same candidates (random sampling with one seed), so they find the same
feasible models. The converter child is started before timing, so neither run pays TensorFlow's import.

    python benchmarks/search_rejection.py [--trials 12] [--max-arena 6000] [--epochs 3]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from tinyflow.examples import digits_arrays
from tinyflow.model import kept_converter
from tinyflow.search import SearchOptions, search


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12)
    ap.add_argument("--max-arena", type=int, default=6000)
    ap.add_argument("--epochs", type=int, default=3)
    a = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="tinyflow-bench-search-"))
    try:
        data = folder / "digits.npz"
        np.savez(data, **digits_arrays())
        rows = []
        with kept_converter():
            # Warm up: TensorFlow in this process and in the converter child, for both runs alike.
            search(data, SearchOptions(space="dense", trials=1, epochs=1, out=str(folder / "warmup"),
                                       sampler="random", pruner="none"))
            for label, reject in (("with rejection", True), ("without rejection", False)):
                options = SearchOptions(space="ds_cnn", trials=a.trials, max_arena=a.max_arena, epochs=a.epochs,
                                        patience=a.epochs, sampler="random", pruner="none", seed=0,
                                        reject_before_training=reject, out=str(folder / label.replace(" ", "-")))
                start = time.perf_counter()
                result = search(data, options)
                minutes = (time.perf_counter() - start) / 60
                trained = sum(r["trained"] for r in result.trials)
                rows.append((label, len(result.trials), trained, result.counts["feasible"], minutes,
                             len(result.trials) / minutes,
                             result.best["accuracy"] if result.best else None))
        print(f"ds_cnn on digits, {a.trials} trials, --max-arena {a.max_arena}, {a.epochs} epochs at most")
        print(f"{'':20s} {'trials':>7s} {'trained':>8s} {'feasible':>9s} {'minutes':>8s} {'trials/min':>11s} "
              f"{'best acc':>9s}")
        for label, n, trained, feasible, minutes, rate, best in rows:
            print(f"{label:20s} {n:7d} {trained:8d} {feasible:9d} {minutes:8.2f} {rate:11.2f} "
                  f"{'-' if best is None else f'{100 * best:.1f} %':>9s}")
        print(f"trials per minute, with / without the rejection: {rows[0][5] / rows[1][5]:.2f}x")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
