"""Deploy wall time per stage on the digits example: a first run and a re-run with the same inputs.

Both runs happen here, one after the other, into the same output folder; the second reuses the model
stages (no TensorFlow work), so the ratio shows what the stage cache saves.

    python benchmarks/deploy_stages.py
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from tinyflow.examples import bundled_digits
from tinyflow.pipeline import DeployOptions, deploy


def main() -> int:
    model, data = bundled_digits()
    out = Path(tempfile.mkdtemp(prefix="tinyflow-bench-")) / "digits"
    try:
        runs = []
        for label in ("first run", "re-run"):
            start = time.perf_counter()
            result = deploy(model, DeployOptions(data=str(data), out=str(out)))
            runs.append((label, time.perf_counter() - start, result.report["timings_s"]))
        stages = list(dict.fromkeys(k for _, _, t in runs for k in t))
        print(f"{'stage':24s} {'first run s':>12s} {'re-run s':>10s}")
        for s in stages:
            a, b = runs[0][2].get(s), runs[1][2].get(s)
            print(f"{s:24s} {a if a is not None else '-':>12} {b if b is not None else 'reused':>10}")
        print(f"{'total (wall)':24s} {runs[0][1]:12.2f} {runs[1][1]:10.2f}")
        print(f"re-run / first run: {runs[1][1] / runs[0][1]:.3f}")
        print("(the first run includes importing TensorFlow; the example itself was trained and cached before)")
    finally:
        shutil.rmtree(out.parent, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
