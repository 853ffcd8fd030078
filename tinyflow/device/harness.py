"""Measure on the device: latency (BENCH), per-op time (PROFILE), and accuracy sample by sample against the host.

Everything timed here is timed on the device (its cycle counter or microsecond timer); the host only
carries bytes. A simulated board's times are host times, and the measurement says ``kind="simulated"``.
"""

from __future__ import annotations

import re
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..boards import Board
from ..errors import DeviceError
from ..graph import ModelGraph, dequantize, numpy_dtype, quantize, random_values
from ..model import Dataset, check_runs, class_ids, roc_auc, run_model, sample_errors
from ..plan import build_versions
from ..protocol import PROTOCOL_VERSION, REFLASH, SETUP, Hello, arena_missing_bytes, version_mismatch
from .link import DeviceReset, Link

MAX_RESETS = 5  # a board that keeps rebooting is broken, not unlucky
ProgressFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Stats:
    min: float
    median: float
    p90: float
    max: float
    mean: float
    spread: float  # max - min

    @staticmethod
    def of(values: list[float] | tuple[float, ...]) -> Stats:
        v = sorted(values)
        p90 = v[min(len(v) - 1, int(np.ceil(0.9 * len(v))) - 1)]
        return Stats(v[0], statistics.median(v), p90, v[-1], statistics.fmean(v), v[-1] - v[0])

    def to_json(self, digits: int = 1) -> dict[str, float]:
        return {k: round(getattr(self, k), digits) for k in ("min", "median", "p90", "max", "mean", "spread")}


@dataclass(frozen=True)
class OpTime:
    index: int
    op: str
    macs: int
    ticks: int
    us: float
    macs_per_cycle: float | None


@dataclass(frozen=True)
class LayerDiff:
    index: int
    op: str
    elements: int
    max_lsb_diff: int | None  # None: the device's tensor is not the size the host's is
    equal_share: float


@dataclass(frozen=True)
class PerLayer:
    """Every op's output on the device against the host TFLM's, over ``inputs`` inputs."""

    inputs: int
    source: str  # "x_test" or "random int8 (seed 0)"
    ops: tuple[LayerDiff, ...]

    @property
    def first_divergent_op(self) -> LayerDiff | None:
        return next((d for d in self.ops if d.max_lsb_diff != 0), None)

    def to_json(self) -> dict:
        first = self.first_divergent_op
        return {"inputs": self.inputs, "source": self.source,
                "first_divergent_op": None if first is None else {"index": first.index, "op": first.op},
                "ops": [{"index": d.index, "op": d.op, "elements": d.elements, "max_lsb_diff": d.max_lsb_diff,
                         "equal_share": round(d.equal_share, 4)} for d in self.ops]}


@dataclass(frozen=True)
class Measurement:
    kind: str  # "hardware" or "simulated"
    hello: Hello
    latency_us: Stats
    cycles: Stats | None
    runs: int
    profile: tuple[OpTime, ...] | None
    profile_note: str | None
    samples: int
    accuracy: float | None
    mse: float | None  # regression / autoencoders: against y_test
    auc: float | None  # with anomaly flags
    bit_exact_share: float | None
    max_lsb_diff: int | None
    resets: int
    retries: int
    samples_per_s: float | None
    per_layer: PerLayer | None = None
    version_warnings: tuple[str, ...] = ()  # the firmware was built with other versions than the plan's

    @property
    def versions(self) -> dict[str, str]:
        """What the firmware was built with, as its HELLO says (ESP-IDF, Arduino core, esp-tflite-micro, esp-nn)."""
        return dict(self.hello.versions)

    @property
    def label(self) -> str:
        return "simulated (host timings, not a device)" if self.kind == "simulated" else "measured on the device"

    def to_json(self) -> dict:
        h = self.hello
        return {
            "kind": self.kind,
            "label": self.label,
            "board_id": h.board_id,
            "runtime": h.runtime,
            "cpu_mhz": h.cpu_mhz or None,
            "arena_bytes": h.arena_bytes,
            "arena_used_bytes": h.arena_used_bytes,
            "arena_region": h.arena_region,
            "self_test": {"passed": h.self_test_passed, "total": h.self_test_total},
            "device_versions": dict(h.versions),
            "version_warnings": list(self.version_warnings),
            "latency_us": self.latency_us.to_json(),
            "cycles": self.cycles.to_json(0) if self.cycles else None,
            "runs": self.runs,
            "profile": None if self.profile is None else [
                {"index": p.index, "op": p.op, "macs": p.macs, "ticks": p.ticks, "us": round(p.us, 2),
                 "macs_per_cycle": None if p.macs_per_cycle is None else round(p.macs_per_cycle, 3)}
                for p in self.profile],
            "profile_note": self.profile_note,
            "samples": self.samples,
            "accuracy": None if self.accuracy is None else round(self.accuracy, 4),
            "mse": None if self.mse is None else round(self.mse, 6),
            "auc": None if self.auc is None else round(self.auc, 4),
            "bit_exact_share": None if self.bit_exact_share is None else round(self.bit_exact_share, 4),
            "max_lsb_diff": self.max_lsb_diff,
            "resets": self.resets,
            "retries": self.retries,
            "samples_per_s": None if self.samples_per_s is None else round(self.samples_per_s, 1),
            "per_layer": None if self.per_layer is None else self.per_layer.to_json(),
        }


_MISSING_OP = re.compile(r"Didn't find op for builtin opcode '([^']+)'")


def _first_line(text: str) -> str:
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def setup_failure(hello: Hello) -> str:
    """The one line for a firmware whose set-up failed: what TFLM said, in numbers, and the fix."""
    text, status = hello.setup_message, hello.setup_status
    said = f" (TFLM: {_first_line(text)})" if text else " (the firmware kept no log of it)"
    if (m := _MISSING_OP.search(text)) is not None:
        return (f"the board's TFLM has no kernel for {m.group(1)}: the firmware's op resolver lacks it{said}; "
                f"re-generate the firmware for this model (tinyflow generate MODEL) and flash it")
    if status == SETUP.SCHEMA:
        return (f"the model's flatbuffer schema is not the one the board's TFLM reads{said}: convert the model "
                f"with a TensorFlow that matches the firmware's TFLM, or {REFLASH}")
    if status == SETUP.RESOLVER:
        return f"TFLM on the board refused to register an op of the generated resolver{said}: {REFLASH}"
    if status == SETUP.NO_ARENA:
        return (f"the board could not allocate its {hello.arena_bytes:,} B arena{said}: it has less free "
                f"{'PSRAM' if hello.arena_region == 'psram' else 'internal SRAM'} than its board file says; "
                f"re-generate for a board file with a smaller arena_sram_bytes or with PSRAM (--psram)")
    if status == SETUP.ALLOCATE:
        missing = arena_missing_bytes(text)
        needed = hello.arena_needed_bytes or (hello.arena_bytes + missing if missing else 0)
        if hello.simulated:
            fix = "start the simulated board with a larger --arena-size (or none: the arena tinyflow plans)"
        else:
            fix = ("re-generate with a larger arena (tinyflow generate MODEL, with a larger arena_margin_bytes in "
                   "the board file) and flash it")
        if needed:
            tflm = f"; TFLM: {_first_line(text)}" if text else ""
            return (f"the board's arena is {hello.arena_bytes:,} B but TFLM needs at least {needed:,} B (it was "
                    f"{needed - hello.arena_bytes:,} B short when AllocateTensors() failed{tflm}): {fix}")
        return f"AllocateTensors() failed on the board with a {hello.arena_bytes:,} B arena{said}: {fix}"
    return f"the firmware's set-up failed with status {hello.setup_status}, which this tinyflow does not know{said}; " \
           f"{REFLASH}"


def check_hello(hello: Hello, graph: ModelGraph, logs: list[str] | None = None) -> None:
    if hello.version != PROTOCOL_VERSION:
        raise DeviceError(version_mismatch(hello.version))
    if hello.model_sha256 != graph.sha256:
        raise DeviceError(f"the device runs another model (SHA-256 {hello.model_sha256[:12]}…, expected "
                          f"{graph.sha256[:12]}…): the firmware is stale, flash it again (tinyflow flash)")
    if hello.setup_status != SETUP.READY:
        raise DeviceError(setup_failure(hello))


class _Session:
    """A link plus what to do when the device resets underneath it."""

    def __init__(self, link: Link, graph: ModelGraph, logs: list[str]):
        self.link, self.graph, self.logs = link, graph, logs
        self.resets = 0

    def call(self, fn: Callable[[], object]) -> object:
        while True:
            try:
                return fn()
            except DeviceReset as reset:
                self.resets += 1
                if self.resets > MAX_RESETS:
                    raise DeviceError(f"the device reset {self.resets} times during the run: it is unstable") from None
                check_hello(reset.hello, self.graph, self.logs)


def _inputs(graph: ModelGraph, data: Dataset, limit: int | None) -> np.ndarray:
    (t,) = graph.input_tensors()
    n = len(data.x_test) if limit is None else min(limit, len(data.x_test))
    return quantize(data.x_test[:n], t)


def _per_layer_inputs(graph: ModelGraph, data: Dataset | None, n: int) -> tuple[list[list[np.ndarray]], str]:
    """``n`` inputs for the per-layer comparison: x_test's first samples, else seeded random int8."""
    in_t = graph.input_tensors()
    if data is not None and len(in_t) == 1:
        xq = _inputs(graph, data, n)
        return [[x.reshape(in_t[0].shape)] for x in xq], "x_test"
    rng = np.random.default_rng(0)
    return [[random_values(t.dtype, t.shape, rng) for t in in_t] for _ in range(n)], "random (seed 0)"


def compare_layers(session: _Session, graph: ModelGraph, tflite: bytes, samples: list[list[np.ndarray]],
                   source: str) -> PerLayer:
    """Run each sample on the device and on the host TFLM (preserve-all-tensors), and compare every op's
    first output. The host interpreter runs in this process: ``check_runs`` first builds and invokes the
    model in a child, so a model TFLM would crash on is an error here, not an abort of tinyflow."""
    from tflite_micro import runtime

    check_runs(tflite, "the model")

    link = session.link
    ops = graph.main.operators
    room = sum(t.bytes for t in graph.main.tensors) + len(tflite) + 256 * 1024
    host = runtime.Interpreter.from_bytes(tflite, arena_size=room,
                                          intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
    worst: list[int | None] = [0] * len(ops)
    equal = [0] * len(ops)
    count = [0] * len(ops)
    for sample in samples:
        for i, x in enumerate(sample):
            host.set_input(x, i)
        host.invoke()
        payload = b"".join(np.ascontiguousarray(x).tobytes() for x in sample)

        def on_device(payload: bytes = payload) -> list[bytes]:
            link.infer(payload)  # after a reset both run again: the tensors are of this input
            return [link.tensor(k, 0).data for k in range(len(ops))]

        device = session.call(on_device)
        for k, op in enumerate(ops):
            t = graph.main.tensors[op.outputs[0]]
            want = np.ascontiguousarray(host.GetTensor(op.outputs[0], 0)["tensor_data"]).reshape(-1)
            dtype = numpy_dtype(t.dtype)
            got = device[k]
            if len(got) != want.nbytes:
                worst[k] = None
                count[k] += want.size
                continue
            a = np.frombuffer(got, dtype=dtype).astype(np.int64 if dtype != np.float32 else np.float64)
            b = want.view(dtype).astype(a.dtype)
            diff = np.abs(a - b)
            if worst[k] is not None:
                worst[k] = max(worst[k], int(np.ceil(diff.max())) if diff.size else 0)
            equal[k] += int(np.sum(diff == 0))
            count[k] += diff.size
    return PerLayer(len(samples), source, tuple(
        LayerDiff(k, op.name, count[k] // max(len(samples), 1), worst[k], equal[k] / count[k] if count[k] else 1.0)
        for k, op in enumerate(ops)))


def measure(link: Link, graph: ModelGraph, tflite: bytes, data: Dataset | None = None, runs: int = 50,
            warmup: int = 5, limit: int | None = None, host_outputs: np.ndarray | None = None,
            logs: list[str] | None = None, progress: ProgressFn | None = None,
            per_layer: int = 0) -> Measurement:
    """Run the whole measurement over ``link``; ``host_outputs``: the host TFLM's raw outputs for x_test;
    ``per_layer``: also compare every op's output with the host's over this many inputs (0: not)."""
    logs = logs if logs is not None else []
    session = _Session(link, graph, logs)
    hello = session.call(link.hello)
    check_hello(hello, graph, logs)
    kind = "simulated" if hello.simulated else "hardware"
    in_t, out_t = graph.input_tensors(), graph.output_tensors()
    if len(in_t) != 1 and data is not None:
        raise DeviceError("measuring accuracy needs a single-input model")
    retries_before = link.retried

    accuracy = mse = auc = bit_exact = max_lsb = rate = None
    n = 0
    first_input = bytes(sum(t.bytes for t in in_t))
    if data is not None:
        xq = _inputs(graph, data, limit)
        n = len(xq)
        if host_outputs is None:
            host_outputs = run_model(tflite, [xq], source="host reference")[0]
        first_input = xq[0].tobytes()
        results: dict[int, bytes] = {}
        started = time.perf_counter()
        while len(results) < n:
            i = min(k for k in range(n) if k not in results)  # the first sample without a stored result
            r = session.call(lambda i=i: link.infer(xq[i].tobytes()))
            results[i] = r.output
            if progress:
                progress("on-device accuracy", len(results), n)
        rate = n / max(time.perf_counter() - started, 1e-9)
        o = out_t[0]
        device = np.stack([np.frombuffer(results[i][:o.bytes], dtype=host_outputs.dtype).reshape(o.shape[1:])
                           for i in range(n)])
        host = host_outputs[:n].reshape(device.shape)
        bit_exact = float(np.mean([results[i][:o.bytes] == host[i].tobytes() for i in range(n)]))
        max_lsb = int(np.max(np.abs(device.astype(np.int64) - host.astype(np.int64)))) if device.size else 0
        if data.y_test is not None and data.is_classification:
            pred = np.argmax(dequantize(device, o).reshape(n, -1), axis=1)
            accuracy = float(np.mean(pred == class_ids(data.y_test[:n])))
        elif data.y_test is not None:
            errors = sample_errors(dequantize(device, o), data.y_test[:n])
            mse = float(np.mean(errors))
            auc = roc_auc(errors, data.anomaly[:n]) if data.anomaly is not None else None

    first = session.call(lambda: link.infer(first_input))
    budget_s = 2.0 + 3 * (warmup + runs) * max(first.latency_us, 1) / 1e6

    def bench():
        link.infer(first_input)  # after a reset the device's input tensor holds nothing meaningful
        return link.bench(warmup, runs, timeout_s=budget_s)

    b = session.call(bench)
    latency = Stats.of(b.latency_us)
    cycles = Stats.of(b.cycles) if any(b.cycles) else None

    profile, note = None, None
    try:
        p = session.call(link.profile)
        ops = graph.main.operators
        tick_hz = p.tick_hz or 1
        profile = tuple(OpTime(i, ops[i].name if i < len(ops) else "?", ops[i].macs if i < len(ops) else 0, t,
                               t / tick_hz * 1e6,
                               (ops[i].macs / t if t and i < len(ops) and hello.cpu_mhz and
                                tick_hz == hello.cpu_mhz * 1_000_000 else None))
                        for i, t in enumerate(p.ticks))
    except DeviceError as e:
        if "no per-op profiler" not in str(e):
            raise
        note = ("the simulated board has no per-op profiler (the tflite-micro Python interpreter does not time "
                "ops)" if hello.simulated else str(e))
    layers = None
    if per_layer:
        samples, source = _per_layer_inputs(graph, data, per_layer)
        layers = compare_layers(session, graph, tflite, samples, source)
    return Measurement(kind, hello, latency, cycles, runs, profile, note, n, accuracy, mse, auc, bit_exact, max_lsb,
                       session.resets, link.retried - retries_before, rate, layers)


# What HELLO says when the firmware does not know a component's version (or has none: the simulated board).
_UNREPORTED = ("", "unknown", "none", "host")


def version_warnings(planned: dict[str, str], reported: dict[str, str]) -> tuple[str, ...]:
    """One sentence per component the device reports at another version than the plan was made for: the
    kernel-library rules (ESP-NN's scratch sizes) are exact per version, so the arena may not be the one
    the plan sized. A component the firmware does not report says nothing."""
    out = []
    for name, want in planned.items():
        got = reported.get(name.replace("-", "_"), "")
        if want and got not in _UNREPORTED and got != want:
            out.append(f"the board's firmware was built with {name} {got} but the plan is for {name} {want}: its "
                       "arena may differ from the plan; re-generate and flash, or plan with "
                       "--kernel-library-version for the versions it was built with")
    return tuple(out)


def measure_on(port: str | None, model_path: str | Path, graph: ModelGraph, tflite: bytes, board: Board,
               data: Dataset | None = None, runs: int = 50, warmup: int = 5, limit: int | None = None,
               host_outputs: np.ndarray | None = None, progress: ProgressFn | None = None,
               on_log: Callable[[str], None] | None = None, timeout_s: float = 2.0,
               per_layer: int = 0) -> Measurement:
    """``port``: a serial port path, "auto" (find the board by USB id), or None/"sim" for the simulated board."""
    from .ports import find_port, open_port
    from .simulator import SimProcess

    logs: list[str] = []

    def log(line: str) -> None:
        logs.append(line)
        if on_log:
            on_log(line)

    if port in (None, "sim"):
        with SimProcess(model_path) as sim:
            serial_port = open_port(sim.port, None)
            try:
                link = Link(serial_port, timeout_s=timeout_s, bytes_per_s=1e6, on_log=log)
                link.wait_hello(10)
                return measure(link, graph, tflite, data, runs, warmup, limit, host_outputs, logs, progress,
                               per_layer)
            finally:
                serial_port.close()
    path = find_port(board) if port == "auto" else port
    serial_port = open_port(path, board)
    try:
        link = Link(serial_port, timeout_s=timeout_s, bytes_per_s=max(board.monitor_speed / 10, 11_520), on_log=log)
        link.wait_hello(10)
        m = measure(link, graph, tflite, data, runs, warmup, limit, host_outputs, logs, progress, per_layer)
        return replace(m, version_warnings=version_warnings(build_versions(board), m.versions))
    finally:
        serial_port.close()
