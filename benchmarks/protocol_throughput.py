"""Serial protocol throughput vs the raw link, measured side by side in one run.

Over the same pseudo-terminal: (1) raw bytes/s a pty carries echoing through the simulated board's pty
layer with no protocol; (2) the protocol's INFER round trips through the simulated board (COBS + CRC32 +
sequence numbers + the TFLM invoke) as samples/s and payload bytes/s. The ratio says what the protocol
costs on top of the link. Host numbers: on a real UART the link (e.g. 92 KB/s at 921600 baud) dominates.

    python benchmarks/protocol_throughput.py [MODEL.tflite] [--seconds S]
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
import tty
from pathlib import Path

import numpy as np

from tinyflow.boards import find_board
from tinyflow.device.link import Link
from tinyflow.device.ports import open_port
from tinyflow.device.simulator import SimProcess
from tinyflow.graph.reader import read_graph

# The model corpus is test code (it is not shipped in the package): import it from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests import corpus


def raw_pty_bytes_per_s(seconds: float, chunk: int = 4096) -> float:
    """A writer thread floods a pty pair; count what the other end reads."""
    master, slave = os.openpty()
    tty.setraw(slave)
    payload = bytes(range(256)) * (chunk // 256)
    stop = time.monotonic() + seconds
    received = 0

    def reader() -> None:
        nonlocal received
        while time.monotonic() < stop:
            received += len(os.read(slave, 65536))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    start = time.monotonic()
    while time.monotonic() < stop:
        os.write(master, payload)
    elapsed = time.monotonic() - start
    t.join(timeout=1)
    os.close(master)
    os.close(slave)
    return received / elapsed


def protocol_rate(model: Path, seconds: float) -> tuple[float, float, int]:
    graph = read_graph(model.read_bytes())
    in_bytes = sum(t.bytes for t in graph.input_tensors())
    out_bytes = sum(t.bytes for t in graph.output_tensors())
    sample = np.zeros(in_bytes, np.int8).tobytes()
    with SimProcess(model) as sim:
        port = open_port(sim.port, find_board("sim"))
        link = Link(port, bytes_per_s=1e6)
        link.wait_hello(10)
        n, start = 0, time.monotonic()
        while time.monotonic() - start < seconds:
            link.infer(sample)
            n += 1
        elapsed = time.monotonic() - start
        port.close()
    return n / elapsed, n * (in_bytes + out_bytes) / elapsed, in_bytes


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", type=Path)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    model = args.model
    if model is None:
        model = Path(".bench-cache") / "cnn_pool.tflite"
        model.parent.mkdir(exist_ok=True)
        model.write_bytes(corpus.cached_tflite("cnn_pool", ".bench-cache"))
    raw = raw_pty_bytes_per_s(args.seconds)
    samples_s, payload_s, in_bytes = protocol_rate(model, args.seconds)
    print(f"raw pty:               {raw / 1e6:10.2f} MB/s")
    print(f"protocol (INFER, {in_bytes} B in): {samples_s:10.1f} samples/s, {payload_s / 1e6:.3f} MB/s of payload")
    print(f"payload / raw:         {payload_s / raw:10.4f}  (round trips and the TFLM invoke, not bytes, bound it)")
    from tinyflow.protocol import Msg, encode_frame

    graph = read_graph(model.read_bytes())
    out_bytes = sum(t.bytes for t in graph.output_tensors())
    wire = len(encode_frame(Msg.INFER, 1, bytes(in_bytes))) + len(encode_frame(Msg.INFER_RESULT, 1,
                                                                                   bytes(9 + out_bytes)))
    print(f"framing efficiency:    {(in_bytes + out_bytes) / wire:10.4f}  ({wire} wire bytes per "
          f"{in_bytes + out_bytes} payload bytes: COBS, header, CRC)")
    print(f"at 921600 baud (92.16 KB/s raw) one sample needs {wire / 92160 * 1000:.1f} ms of link time")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
