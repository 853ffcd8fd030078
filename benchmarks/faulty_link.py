"""The same measurement through a clean link and through a noisy one, side by side in one run.

The harness's whole measurement (INFER over N samples, then BENCH) against the simulated board: once
straight over its pty, then through tests/fault_proxy.py hitting about one chunk (≈ one frame) in 280,
either way, with a dropped byte, a flipped bit, garbage or the whole chunk lost; then at 2.5x that noise.
Prints each wall time, the ratio faulty/clean (the goal is <= 3) and what the link did about the faults.
Results must equal the clean run's (the device answers retries from its cache). The clean run goes first
and last and the faster counts, so a busy host makes the ratios worse, not better.

    python benchmarks/faulty_link.py [MODEL.tflite] [--samples N] [--one-in 280] [--seed S]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from tinyflow.boards import find_board
from tinyflow.device.harness import Measurement, measure
from tinyflow.device.link import DEFAULT_TIMEOUT_S, Link
from tinyflow.device.ports import open_port
from tinyflow.device.simulator import SimProcess
from tinyflow.errors import DeviceError
from tinyflow.graph import quantize
from tinyflow.graph.reader import read_graph
from tinyflow.model import Dataset, load_dataset, run_model

# The model corpus and the fault proxy are test code (not shipped in the package): import from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus
from tests.fault_proxy import FaultProxy, Faults


def _dataset(graph, n: int, folder: Path) -> Dataset:
    (t,) = graph.input_tensors()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, *t.shape[1:])).astype("float32")
    classes = int(np.prod(graph.output_tensors()[0].shape[1:]))
    path = folder / f"faulty_link_{n}.npz"
    np.savez(path, x_test=x, y_test=rng.integers(0, classes, n))
    return load_dataset(path, need_train=False)


def _run(port_path: str, graph, tflite: bytes, data: Dataset, host: np.ndarray) -> tuple[float, Measurement]:
    port = open_port(port_path, find_board("sim"))
    try:
        link = Link(port, timeout_s=DEFAULT_TIMEOUT_S, bytes_per_s=1e6)  # the CLI's defaults
        link.wait_hello(10)
        start = time.perf_counter()
        m = measure(link, graph, tflite, data, runs=50, warmup=5, host_outputs=host)
        return time.perf_counter() - start, m
    finally:
        port.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--one-in", type=float, default=280.0, help="one fault per this many chunks (default 280)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    model = args.model
    Path(".bench-cache").mkdir(exist_ok=True)
    if model is None:
        model = Path(".bench-cache") / "cnn_pool.tflite"
        model.write_bytes(corpus.cached_tflite("cnn_pool", ".bench-cache"))
    tflite = model.read_bytes()
    graph = read_graph(tflite)
    data = _dataset(graph, args.samples, Path(".bench-cache"))
    host = run_model(tflite, [quantize(data.x_test, graph.input_tensors()[0])], source="host reference")[0]

    def clean_run() -> tuple[float, Measurement]:
        with SimProcess(model) as sim:
            return _run(sim.port, graph, tflite, data, host)

    clean_s, clean = clean_run()
    print(f"{args.samples} samples + BENCH 5+50 through a clean link: {clean_s:8.2f} s")
    rows = []
    for label, one_in in (("faulty", args.one_in), ("2.5x noise", args.one_in / 2.5)):
        faults = Faults(one_in=one_in, seed=args.seed)
        start = time.perf_counter()
        try:
            with SimProcess(model) as sim, FaultProxy(sim.port, faults) as proxy:
                seconds, m = _run(proxy.path, graph, tflite, data, host)
                chunks = proxy._up + proxy._down
        except DeviceError as e:
            rows.append((label, one_in, None, f"FAILED after {time.perf_counter() - start:.1f} s: {e}"))
            continue
        same = (m.samples, m.accuracy, m.bit_exact_share) == (clean.samples, clean.accuracy, clean.bit_exact_share)
        hits = ", ".join(f"{k} {v}" for k, v in sorted(faults.counts.items()))
        rows.append((label, one_in, seconds, f"{m.retries} resends, {m.resets} resets, results "
                     f"{'equal' if same else 'DIFFER'}; {sum(faults.counts.values())} faults in {chunks} chunks: "
                     f"{hits or 'none'}"))
    again_s, _ = clean_run()
    print(f"{args.samples} samples + BENCH 5+50 through a clean link again: {again_s:8.2f} s")
    clean_s = min(clean_s, again_s)
    for label, one_in, seconds, note in rows:
        ratio = "   -  " if seconds is None else f"{seconds / clean_s:6.2f}"
        took = "" if seconds is None else f"{seconds:8.2f} s"
        print(f"{label:>10} (1 in {one_in:5.0f} chunks): {took:>10}   faulty/clean {ratio}   {note}")
    first = rows[0][2]
    print(f"faulty/clean at 1 in {args.one_in:.0f}: {'failed' if first is None else f'{first / clean_s:.2f}'} "
          "(goal <= 3)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
