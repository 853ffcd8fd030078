"""The simulated board: tinyflow's serial protocol on a pseudo-terminal, backed by the real TFLM interpreter.

``tinyflow simulate MODEL.tflite`` prints the pty's path and serves
until stopped. The protocol is answered by the firmware's own C module (firmware_templates/common/
tinyflow_protocol.cc), compiled once with the host's C++ compiler and called through ctypes, so the
simulator exercises the code the boards run; without a compiler an equivalent Python server is used.
Inference runs on the ``tflite-micro`` interpreter with exactly the arena tinyflow planned for the
``sim`` board. Latencies are host wall time: the HELLO says "simulated" and every report labels them so.
SIGUSR1 makes the board "reset": a new boot id, a boot log and an unsolicited HELLO, as a real reset would.
Started by ``SimProcess`` it dies with its parent, however the parent ends (see ``die_with_parent``).
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import os
import select
import signal
import subprocess
import sys
import time
import tty
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..graph import ModelGraph, Tensor, read_graph
from ..paths import templates_dir
from ..protocol import (
    FLAGS,
    MAX_BENCH_RUNS,
    PROTOCOL_VERSION,
    SETUP,
    TENSOR_TYPE_CODES,
    Decoder,
    Frame,
    Hello,
    Msg,
    TensorInfo,
    arena_missing_bytes,
    encode_frame,
)

SIM_BOARD_ID = "sim"
BODY_BYTES_MIN = 16 * 1024


def _tensor_info(t: Tensor) -> TensorInfo:
    q = t.quantization
    return TensorInfo(t.dtype.lower(), tuple(t.shape), q.scale if q else 0.0, q.zero_point if q else 0, t.bytes)


def _with_stderr_captured(fn: Callable[[], Any]) -> tuple[Any, BaseException | None, str]:
    """Run ``fn`` with file descriptor 2 going to a file: TFLM's C++ prints its errors there (DebugLog), as
    on a board, and the text is what a board's HELLO carries. The text is passed on to our stderr after."""
    import tempfile

    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            result, error = fn(), None
        except Exception as e:  # TFLM's failure is the board's state, reported in HELLO
            result, error = None, e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    if text:
        sys.stderr.write(text)
        sys.stderr.flush()
    return result, error, text


class Model:
    """The TFLM interpreter for one model, with the sim board's arena. A set-up that fails (an arena too
    small) does not raise: like the firmware, the board then answers HELLO with the status and TFLM's log."""

    def __init__(self, data: bytes, arena: int, fault_op: int | None = None):
        from tflite_micro import runtime

        self.data = data
        self.fault_op = fault_op  # a board that computes op K wrong (for testing `measure --per-layer`)
        self._debug = None  # the preserve-all-tensors interpreter TENSOR_READ reads, made at its first use
        self._debug_of = -1  # which inference the debug interpreter last ran
        self._runs = 0
        self.graph: ModelGraph = read_graph(data)
        self.inputs = self.graph.input_tensors()
        self.outputs = self.graph.output_tensors()
        self.arena = arena
        self.interpreter, error, log = _with_stderr_captured(
            lambda: runtime.Interpreter.from_bytes(data, arena_size=arena))
        self.setup_status = SETUP.READY if error is None else SETUP.ALLOCATE
        # As the firmware: TFLM's own words first (its first line is the cause), else the exception.
        self.setup_message = (log.strip() or str(error)) if error is not None else ""
        missing = arena_missing_bytes(log) if error is not None else None
        self.arena_needed = arena + missing if missing else 0
        self.input_bytes = sum(t.bytes for t in self.inputs)
        self.output_bytes = sum(t.bytes for t in self.outputs)
        self._last: list[np.ndarray] | None = None

    def infer(self, data: bytes | None) -> tuple[bytes, int]:
        """Outputs (concatenated raw bytes) and the host time of invoke() in microseconds."""
        if self.interpreter is None:
            raise RuntimeError("the model is not set up")  # an Invoke() failure for the host, as on a board
        if data is not None:
            at, arrays = 0, []
            for t in self.inputs:
                raw = np.frombuffer(data[at:at + t.bytes], dtype=_np_type(t)).reshape(t.shape)
                arrays.append(raw)
                at += t.bytes
            self._last = arrays
        if self._last is None:
            self._last = [np.zeros(t.shape, dtype=_np_type(t)) for t in self.inputs]
        for i, a in enumerate(self._last):
            self.interpreter.set_input(a, i)
        start = time.perf_counter_ns()
        self.interpreter.invoke()
        elapsed = (time.perf_counter_ns() - start) // 1000
        out = b"".join(np.ascontiguousarray(self.interpreter.get_output(i)).tobytes()
                       for i in range(len(self.outputs)))
        self._runs += 1
        if self.fault_op is not None and self.fault_op < len(self.graph.main.operators):
            out = _perturbed(out)  # the fault reaches the model's outputs too
        return out, int(elapsed)

    def tensor(self, op: int, index: int) -> tuple[int, bytes, int]:
        """(0, bytes, TFLite type code) of output ``index`` of op ``op`` after the last inference; (1, ...) when
        the op has no such output. Read from a second interpreter in TFLM's preserve-all-tensors mode, run on
        the same input: the board's own interpreter reuses tensor memory, as the firmware's does."""
        from tflite_micro import runtime

        ops = self.graph.main.operators
        if op >= len(ops) or index >= len(ops[op].outputs):
            return 1, b"", 0
        if self._debug is None:
            # Every tensor has its own memory in this mode: room for all of them beside the planned arena.
            room = self.arena + sum(t.bytes for t in self.graph.main.tensors) + 64 * 1024
            self._debug = runtime.Interpreter.from_bytes(self.data, arena_size=room,
                                                         intrepreter_config=runtime.InterpreterConfig.kPreserveAllTensors)
        if self._debug_of != self._runs:
            inputs = self._last or [np.zeros(t.shape, dtype=_np_type(t)) for t in self.inputs]
            for i, a in enumerate(inputs):
                self._debug.set_input(a, i)
            self._debug.invoke()
            self._debug_of = self._runs
        tensor_index = ops[op].outputs[index]
        raw = np.ascontiguousarray(self._debug.GetTensor(tensor_index, 0)["tensor_data"]).tobytes()
        if self.fault_op is not None and op >= self.fault_op:
            # The Python interpreter cannot change a tensor in the middle of invoke(): op K's output and every
            # later op's show the fault, as they would when op K computed wrong on a board.
            raw = _perturbed(raw)
        return 0, raw, TENSOR_TYPE_CODES.get(self.graph.main.tensors[tensor_index].dtype.lower(), 0)


def _perturbed(raw: bytes) -> bytes:
    """+1 LSB on every fifth byte (an int8 tensor's elements): the simulated fault."""
    out = bytearray(raw)
    for i in range(0, len(out), 5):
        out[i] = (out[i] + 1) & 0xFF
    return bytes(out)


def _np_type(t: Tensor) -> Any:
    return {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "FLOAT32": np.float32}[t.dtype]


class SimBoard:
    """Device state shared by both protocol servers: what HELLO says, inference, resets."""

    def __init__(self, model: Model, write: Callable[[bytes], None]):
        self.model = model
        self.write = write
        out = model.output_bytes
        # One response buffer, sized as the firmware sizes it; both servers derive the BENCH limit from it.
        self.body_bytes = max(BODY_BYTES_MIN, 7 + 3 + 8 * MAX_BENCH_RUNS + out + 4, 7 + 9 + out + 4)
        self.bench_limit = min(MAX_BENCH_RUNS, (self.body_bytes - 11 - 3 - out) // 8)
        self.boot_id = 0
        self.reboot_count = 0
        self.new_boot()

    def new_boot(self) -> None:
        self.boot_id = int.from_bytes(os.urandom(4), "little") or 1
        self.reboot_count += 1

    def hello_payload(self) -> bytes:
        m = self.model
        ready = m.setup_status == SETUP.READY
        versions = {"esp_idf": "host", "arduino_core": "host", "esp_tflite_micro": f"tflite-micro {_tflm_version()}",
                    "esp_nn": "none"}
        return Hello(PROTOCOL_VERSION, FLAGS.SIMULATED, self.boot_id, m.graph.sha256, 0, m.arena,
                     m.arena if ready else 0, "host", 0, 0, SIM_BOARD_ID,
                     f"simulated: tflite-micro {_tflm_version()} on the host (reference kernels)",
                     tuple(_tensor_info(t) for t in m.inputs), tuple(_tensor_info(t) for t in m.outputs),
                     m.setup_status, m.setup_message[:255], m.arena_needed, versions).pack()

    def boot_log(self) -> None:
        self.write(f"tinyflow simulated board: boot {self.reboot_count}, arena {self.model.arena} bytes\r\n".encode())


def _tflm_version() -> str:
    from ..model import tflm_version

    return tflm_version()


# ---- the firmware's C protocol module, through ctypes ------------------------------------------------

_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
_HELLO = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t)
_INFER = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t,
                          ctypes.POINTER(ctypes.c_uint8), ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t),
                          ctypes.POINTER(ctypes.c_uint32), ctypes.POINTER(ctypes.c_uint32))
_PCOUNT = ctypes.CFUNCTYPE(ctypes.c_uint16, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint32))
_PTICKS = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_void_p, ctypes.c_uint16)
_TENSOR = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_uint16, ctypes.c_uint8,
                           ctypes.POINTER(ctypes.c_void_p), ctypes.POINTER(ctypes.c_uint32),
                           ctypes.POINTER(ctypes.c_uint8))


class _Device(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("write", _WRITE), ("hello", _HELLO), ("infer", _INFER),
                ("profile_count", ctypes.c_void_p), ("profile_ticks", ctypes.c_void_p), ("tensor", _TENSOR),
                ("input_bytes", ctypes.c_size_t), ("output_bytes", ctypes.c_size_t)]


class _Server(ctypes.Structure):
    # Mirrors tf_server_t in tinyflow_protocol.h.
    _fields_ = [("dev", ctypes.c_void_p), ("rx", ctypes.c_void_p), ("rx_cap", ctypes.c_size_t),
                ("rx_len", ctypes.c_size_t), ("rx_crc", ctypes.c_uint32), ("rx_tail", ctypes.c_uint8 * 4),
                ("cobs_left", ctypes.c_uint8), ("cobs_zero", ctypes.c_uint8), ("rx_started", ctypes.c_uint8),
                ("body", ctypes.c_void_p),
                ("body_cap", ctypes.c_size_t), ("tx", ctypes.c_void_p), ("tx_cap", ctypes.c_size_t),
                ("tx_len", ctypes.c_size_t), ("last_seq", ctypes.c_uint16), ("last_type", ctypes.c_uint8),
                ("have_last", ctypes.c_int), ("frames_ok", ctypes.c_uint32), ("frames_bad", ctypes.c_uint32)]


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tinyflow"


def build_protocol_library() -> Path | None:
    """Compile the firmware's protocol module into a shared library (cached by source hash); None without g++."""
    src = templates_dir() / "common" / "tinyflow_protocol.cc"
    digest = hashlib.sha256(src.read_bytes() + (templates_dir() / "common" / "tinyflow_protocol.h").read_bytes())
    lib = _cache_dir() / f"tinyflow_protocol-{digest.hexdigest()[:12]}.so"
    if lib.is_file():
        return lib
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.with_suffix(f".{os.getpid()}.tmp")
    try:
        proc = subprocess.run(["g++", "-std=c++11", "-O2", "-shared", "-fPIC", f"-I{src.parent}", str(src), "-o",
                               str(tmp)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    tmp.replace(lib)
    return lib


class CServer:
    """The firmware's tinyflow_protocol.cc answering for the simulated board."""

    implementation = "firmware C module"

    def __init__(self, lib_path: Path, board: SimBoard):
        self.lib = ctypes.CDLL(str(lib_path))
        self.lib.tf_server_feed.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t]
        self.board = board
        m = board.model
        body = board.body_bytes
        self._rx = ctypes.create_string_buffer(m.input_bytes + m.input_bytes // 254 + 64)
        self._body = ctypes.create_string_buffer(body)
        self._tx = ctypes.create_string_buffer(body + body // 254 + 16)
        self._callbacks = (_WRITE(self._write), _HELLO(self._hello), _INFER(self._infer))
        self._tensor_cb = _TENSOR(self._tensor)
        self._tensor_bytes = ctypes.create_string_buffer(1)  # the last tensor read, alive until the next
        self.device = _Device(None, *self._callbacks, None, None, self._tensor_cb, m.input_bytes, m.output_bytes)
        self.server = _Server()
        self.reset()

    def reset(self) -> None:
        self.lib.tf_server_init(ctypes.byref(self.server), ctypes.byref(self.device), self._rx, len(self._rx),
                                self._body, len(self._body), self._tx, len(self._tx))

    def feed(self, data: bytes) -> None:
        self.lib.tf_server_feed(ctypes.byref(self.server), data, len(data))

    def announce(self) -> None:
        self.lib.tf_server_announce(ctypes.byref(self.server))

    def _write(self, ctx, data, n) -> None:
        self.board.write(ctypes.string_at(data, n))

    def _hello(self, ctx, out, cap) -> int:
        payload = self.board.hello_payload()
        if len(payload) > cap:
            return 0
        ctypes.memmove(out, payload, len(payload))
        return len(payload)

    def _infer(self, ctx, data, n, out, cap, out_len, micros, cycles) -> int:
        try:
            result, us = self.board.model.infer(ctypes.string_at(data, n) if data else None)
        except Exception:  # an interpreter failure is an Invoke() failure for the host
            return 2
        if len(result) > cap:
            return 1
        ctypes.memmove(out, result, len(result))
        out_len[0], micros[0], cycles[0] = len(result), us, 0
        return 0


    def _tensor(self, ctx, op, index, data, length, dtype) -> int:
        try:
            found, raw, code = self.board.model.tensor(op, index)
        except Exception:  # a model that is not set up keeps no tensors, as a firmware whose set-up failed
            return 2
        if found:
            return found
        self._tensor_bytes = ctypes.create_string_buffer(raw, max(len(raw), 1))
        data[0] = ctypes.cast(self._tensor_bytes, ctypes.c_void_p).value
        length[0], dtype[0] = len(raw), code
        return 0


class PyServer:
    """The same protocol in Python, for hosts without a C++ compiler (same answers as the C module)."""

    implementation = "Python server"

    def __init__(self, board: SimBoard):
        self.board = board
        self.reset()

    def reset(self) -> None:
        self.decoder = Decoder()
        self.last: tuple[int, int, bytes] | None = None  # (seq, type, encoded response)

    def announce(self) -> None:
        self.board.write(encode_frame(Msg.HELLO, 0, self.board.hello_payload()))

    def feed(self, data: bytes) -> None:
        for item in self.decoder.feed(data):
            if isinstance(item, Frame):
                self._handle(item)
            else:  # a damaged request: ask for it again (not kept as the last response, as in the C module)
                self.board.write(encode_frame(Msg.NAK, 0))

    def _reply(self, req: Frame, msg_type: int, payload: bytes) -> None:
        frame = encode_frame(msg_type, req.seq, payload)
        self.last = (req.seq, req.type, frame)
        self.board.write(frame)

    def _error(self, req: Frame, code: int, message: str) -> None:
        raw = message.encode()[:255]
        self._reply(req, Msg.ERROR, bytes([code, len(raw)]) + raw)

    def _handle(self, req: Frame) -> None:
        import struct

        if self.last and self.last[0] == req.seq and self.last[1] == req.type and req.type != Msg.HELLO_REQ:
            self.board.write(self.last[2])
            return
        m = self.board.model
        if req.type == Msg.HELLO_REQ:
            self._reply(req, Msg.HELLO, self.board.hello_payload())
        elif req.type == Msg.INFER:
            if len(req.payload) != m.input_bytes:
                return self._error(req, 2, "INFER payload is not the model's input size")
            try:
                out, us = m.infer(req.payload)
            except Exception:  # as CServer._infer: an interpreter failure is an Invoke() failure
                return self._error(req, 3, "Invoke() failed")
            self._reply(req, Msg.INFER_RESULT, struct.pack("<BII", 0, us, 0) + out)
        elif req.type == Msg.BENCH:
            if len(req.payload) != 4:
                return self._error(req, 2, "BENCH payload is warmup:u16 runs:u16")
            warmup, runs = struct.unpack("<HH", req.payload)
            if not 1 <= runs <= self.board.bench_limit:
                return self._error(req, 4, f"BENCH takes 1 to {self.board.bench_limit} runs on this device")
            try:
                times = [m.infer(None)[1] for _ in range(warmup + runs)][warmup:]
            except Exception:
                return self._error(req, 3, "Invoke() failed")
            self._reply(req, Msg.BENCH_RESULT, struct.pack(f"<BH{runs}I{runs}I", 0, runs, *times, *([0] * runs)))
        elif req.type == Msg.PROFILE:
            self._error(req, 5, "this device has no per-op profiler")
        elif req.type == Msg.TENSOR_READ:
            if len(req.payload) != 9:
                return self._error(req, 2, "TENSOR_READ payload is op:u16 index:u8 offset:u32 length:u16")
            op, index, offset, length = struct.unpack("<HBIH", req.payload)
            try:
                found, raw, code = m.tensor(op, index)
            except Exception:  # as CServer._tensor
                found, raw, code = 2, b"", 0
            if found == 1:
                return self._error(req, 6, "the model has no such op output")
            if found:
                return self._error(req, 6, "this firmware keeps no intermediate tensors")
            room = self.board.body_bytes - 11 - 10  # as the C module: what its response buffer holds
            chunk = raw[offset:offset + min(length, room)] if offset < len(raw) else b""
            self._reply(req, Msg.TENSOR_DATA, struct.pack("<BBII", 0, code, len(raw), offset) + chunk)
        else:
            self._error(req, 1, "unknown message type")


def die_with_parent(parent_pid: int) -> None:
    """Linux: have the kernel SIGKILL this process when its parent dies, even by SIGKILL. The signal comes
    when the parent *thread* that started us ends, so ``SimProcess`` belongs in a thread that outlives it;
    ``serve`` also stops when the parent changes or stdin closes, which covers other systems."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            pass  # no prctl: the polling in serve() still notices
    if os.getppid() != parent_pid:  # the parent died before the line above: nobody would signal us
        os._exit(0)


def serve(model_path: str, arena: int | None, use_c: bool = True, parent_pid: int | None = None,
          fault_op: int | None = None) -> None:
    """Serve the protocol on a new pty until SIGTERM/SIGINT; print the pty path first. With ``parent_pid``
    (a ``SimProcess`` child) also until that parent is gone or closes our stdin."""
    from ..plan import plan_graph

    data = Path(model_path).read_bytes()
    graph = read_graph(data, model_path)
    arena = arena or plan_graph(graph, 8).min_arena_bytes
    master, slave = os.openpty()
    tty.setraw(slave)  # no echo, no line editing: the slave stays open so the master never reads EIO
    path = os.ttyname(slave)

    def write(chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            try:
                view = view[os.write(master, view):]
            except BlockingIOError:
                time.sleep(0.001)

    board = SimBoard(Model(data, arena, fault_op), write)
    lib = build_protocol_library() if use_c else None
    server: CServer | PyServer = CServer(lib, board) if lib else PyServer(board)
    reset = {"pending": False}
    stop = {"now": False}
    signal.signal(signal.SIGUSR1, lambda *_: reset.update(pending=True))
    signal.signal(signal.SIGTERM, lambda *_: stop.update(now=True))
    signal.signal(signal.SIGINT, lambda *_: stop.update(now=True))
    print(path, flush=True)
    state = "" if board.model.setup_status == SETUP.READY else " (set-up FAILED: it answers HELLO with why)"
    print(f"simulated board for {Path(model_path).name}: arena {arena} bytes{state}, protocol answered by the "
          f"{server.implementation}", file=sys.stderr, flush=True)
    board.boot_log()
    server.announce()
    watched = [master]
    if parent_pid is not None:
        watched.append(sys.stdin.fileno())
    while not stop["now"]:
        if parent_pid is not None and os.getppid() != parent_pid:
            break  # orphaned: reparented to init or a subreaper
        if reset["pending"]:
            reset["pending"] = False
            board.new_boot()
            server.reset()
            board.boot_log()
            server.announce()
        try:
            ready_fds, _, _ = select.select(watched, [], [], 0.05)
        except InterruptedError:
            continue
        if len(watched) > 1 and watched[1] in ready_fds and not os.read(watched[1], 4096):
            break  # the parent closed our stdin, or died and the kernel closed it
        if master in ready_fds:
            try:
                chunk = os.read(master, 65536)
            except OSError:
                time.sleep(0.01)
                continue
            server.feed(chunk)


class SimProcess:
    """A simulated board in a child process (TFLM may abort on a bad model: tinyflow must survive it).

    ``with SimProcess(model) as sim: Link(serial.Serial(sim.port))``; ``sim.reset()`` reboots it.
    """

    def __init__(self, model_path: str | Path, arena: int | None = None, python_server: bool = False,
                 start_timeout_s: float = 60.0, arena_size: int | None = None, fault_op: int | None = None):
        self.model_path = str(model_path)
        self.arena = arena_size or arena  # arena_size: the name `tinyflow simulate --arena-size` uses
        self.python_server = python_server
        self.fault_op = fault_op
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.port = ""

    def __enter__(self) -> SimProcess:
        from ..errors import DeviceError

        # -c, not -m: the package imports this module, and -m would run a second copy of it as __main__.
        cmd = [sys.executable, "-c", "import sys; from tinyflow.device.simulator import main; sys.exit(main())",
               self.model_path, "--parent-pid", str(os.getpid())]
        if self.arena:
            cmd += ["--arena-size", str(self.arena)]
        if self.python_server:
            cmd.append("--python-server")
        if self.fault_op is not None:
            cmd += ["--fault-op", str(self.fault_op)]
        # stdin is a pipe only we hold: when this process dies, however, the child reads EOF and stops.
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], self.start_timeout_s)
        line = self.proc.stdout.readline().strip() if ready else ""
        if not line.startswith("/dev/"):
            self.proc.kill()
            err = self.proc.stderr.read().strip().splitlines()
            raise DeviceError(f"the simulated board did not start: {err[-1] if err else 'no output'}")
        self.port = line
        return self

    def reset(self) -> None:
        self.proc.send_signal(signal.SIGUSR1)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __exit__(self, *exc: object) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tinyflow simulate", description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--arena-size", "--arena", dest="arena", type=int,
                    help="arena bytes (default: the planned minimum for the sim board); below what TFLM needs, the "
                         "board fails its set-up as a board would")
    ap.add_argument("--python-server", action="store_true", help="answer with the Python server, not the C module")
    ap.add_argument("--fault-op", type=int, metavar="K", help="a faulty board: op K's output (and every later op's) "
                                                              "is off by 1 LSB in some elements")
    ap.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)  # set by SimProcess: die with it
    args = ap.parse_args(argv)
    if args.parent_pid is not None:
        die_with_parent(args.parent_pid)
    serve(args.model, args.arena, use_c=not args.python_server, parent_pid=args.parent_pid, fault_op=args.fault_op)
    return 0


