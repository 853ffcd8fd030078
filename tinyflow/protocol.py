"""tinyflow's serial protocol: frames and messages, as bytes. No I/O here (see ``link``).

A frame on the wire is ``00 | COBS(body) | 00`` where body = ``type:u8 seq:u16 len:u32 payload crc32:u32``
(little-endian; CRC-32 as zlib computes it, over type..payload). COBS removes every 0x00 from the body,
so 0x00 only ever delimits: anything between delimiters that does not decode to a well-formed frame with
a good CRC (boot logs, printf, line noise) is skipped and handed back as log text. The leading 0x00
flushes whatever text came before a frame. The firmware's C module (firmware_templates/common/
tinyflow_protocol.cc) implements the same format; the tests drive one against the other.

Requests carry a sequence number (1..65535); the response echoes it. The device keeps its last
response and sends it again, without running anything, when a request repeats that sequence number:
a retried request is never counted twice. At boot the device sends a HELLO with sequence 0 on its own;
its ``boot_id`` changes with every boot, which is how the host notices a reset. A chunk the device
cannot take as a frame (a request the line damaged) gets a NAK at once (version 2), so the host resends
after one round trip instead of a timeout.
"""

from __future__ import annotations

import re
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import IntEnum

from .errors import DeviceError

# 2: the device answers a damaged chunk with NAK; 3: HELLO carries set-up status and versions, TENSOR_READ
PROTOCOL_VERSION = 3
MAX_FRAME_BYTES = 4 * 1024 * 1024  # a chunk longer than this without a delimiter is noise
_HEADER = struct.Struct("<BHI")

# TFLite TensorType codes used in HELLO (schema.fbs)
TENSOR_TYPES = {0: "float32", 2: "int32", 3: "uint8", 7: "int16", 9: "int8"}
TENSOR_TYPE_CODES = {v: k for k, v in TENSOR_TYPES.items()}


class Msg(IntEnum):
    HELLO_REQ = 0x01
    INFER = 0x02
    BENCH = 0x03
    PROFILE = 0x04
    TENSOR_READ = 0x05  # op:u16 index:u8 offset:u32 length:u16: a chunk of one op output of the last inference
    HELLO = 0x81
    INFER_RESULT = 0x82
    BENCH_RESULT = 0x83
    PROFILE_RESULT = 0x84
    TENSOR_DATA = 0x85
    NAK = 0xFE  # device -> host, seq 0, no payload: "a chunk arrived that was not a frame"
    ERROR = 0xFF


class FLAGS:
    SIMULATED = 1
    SELF_TEST_RAN = 2
    SELF_TEST_PASSED = 4


class SETUP:
    """How the firmware's set-up ended (HELLO ``setup_status``)."""

    READY = 0
    SCHEMA = 1  # the model's schema version is not the one this TFLM reads
    RESOLVER = 2  # TFLM refused to register an op of the resolver
    NO_ARENA = 3  # the platform could not allocate the arena
    ALLOCATE = 4  # AllocateTensors() failed: the arena is too small or an op is missing


class ProtocolError(DeviceError):
    """A frame or payload that does not parse. A ``DeviceError`` so that one escaping the link's own
    handling is still the device's fault on one line, never a traceback; the link words the fix."""


REFLASH = "re-generate and flash the firmware with this tinyflow"


def version_mismatch(version: int) -> str:
    return (f"the device speaks tinyflow protocol version {version}, this tinyflow speaks {PROTOCOL_VERSION}: its "
            f"firmware was built by another tinyflow; {REFLASH}")


def cobs_encode(data: bytes) -> bytes:
    out = bytearray()
    block = bytearray()
    for b in data:
        if b == 0:
            out.append(len(block) + 1)
            out += block
            block.clear()
        else:
            block.append(b)
            if len(block) == 254:
                out.append(255)
                out += block
                block.clear()
    out.append(len(block) + 1)
    out += block
    return bytes(out)


def cobs_decode(data: bytes) -> bytes:
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        code = data[i]
        end = i + code
        if code == 0 or end > n:
            raise ProtocolError("bad COBS block")
        out += data[i + 1:end]
        i = end
        if code != 255 and i < n:
            out.append(0)
    return bytes(out)


@dataclass(frozen=True)
class Frame:
    type: int
    seq: int
    payload: bytes


def encode_frame(msg_type: int, seq: int, payload: bytes = b"") -> bytes:
    body = _HEADER.pack(msg_type, seq, len(payload)) + payload
    body += struct.pack("<I", zlib.crc32(body) & 0xFFFFFFFF)
    return b"\x00" + cobs_encode(body) + b"\x00"


def decode_body(chunk: bytes) -> Frame:
    body = cobs_decode(chunk)
    if len(body) < _HEADER.size + 4:
        raise ProtocolError("frame too short")
    msg_type, seq, length = _HEADER.unpack_from(body)
    if _HEADER.size + length + 4 != len(body):
        raise ProtocolError("length field does not match the frame")
    (crc,) = struct.unpack_from("<I", body, len(body) - 4)
    if zlib.crc32(body[:-4]) & 0xFFFFFFFF != crc:
        raise ProtocolError("CRC mismatch")
    return Frame(msg_type, seq, body[_HEADER.size:-4])


class Garbled(bytes):
    """A chunk that looks like a damaged frame, not log text (still handed on as log bytes)."""


class Decoder:
    """Feed raw bytes; get back frames and, for anything else, the bytes as log text (``Garbled`` when
    they look binary: most likely a frame the line damaged)."""

    def __init__(self) -> None:
        self._chunk = bytearray()
        self.bad_frames = 0

    def feed(self, data: bytes) -> Iterator[Frame | bytes]:
        self._chunk += data
        while (end := self._chunk.find(0)) >= 0:
            chunk = bytes(self._chunk[:end])
            del self._chunk[:end + 1]
            if not chunk:
                continue
            try:
                yield decode_body(chunk)
            except ProtocolError:
                if _looks_binary(chunk):
                    self.bad_frames += 1
                    yield Garbled(chunk)
                else:
                    yield chunk
        if len(self._chunk) > MAX_FRAME_BYTES:
            noise = bytes(self._chunk)
            self._chunk.clear()
            yield noise


def _looks_binary(chunk: bytes) -> bool:
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in chunk)
    return printable < 0.9 * len(chunk)


# ---- payloads -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]
    scale: float
    zero_point: int
    bytes: int

    def pack(self) -> bytes:
        return struct.pack("<BB", TENSOR_TYPE_CODES[self.dtype], len(self.shape)) + \
            struct.pack(f"<{len(self.shape)}i", *self.shape) + struct.pack("<fiI", self.scale, self.zero_point,
                                                                            self.bytes)


@dataclass(frozen=True)
class Hello:
    version: int
    flags: int
    boot_id: int
    model_sha256: str
    cpu_mhz: int
    arena_bytes: int
    arena_used_bytes: int
    arena_region: str  # "sram" | "psram" | "host"
    self_test_total: int
    self_test_passed: int
    board_id: str
    runtime: str
    inputs: tuple[TensorInfo, ...]
    outputs: tuple[TensorInfo, ...]
    # Version 3: how set-up ended, TFLM's own words about it (the start of its log, bounded), the arena it
    # needed when known (0: unknown), and what the firmware was built with ({"esp_idf": "v5.1.2", ...}).
    setup_status: int = SETUP.READY
    setup_message: str = ""
    arena_needed_bytes: int = 0
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def simulated(self) -> bool:
        return bool(self.flags & FLAGS.SIMULATED)

    def pack(self) -> bytes:
        regions = {"sram": 0, "psram": 1, "host": 2}
        out = struct.pack("<HHI", self.version, self.flags, self.boot_id) + bytes.fromhex(self.model_sha256)
        out += struct.pack("<IIIBHH", self.cpu_mhz, self.arena_bytes, self.arena_used_bytes,
                           regions[self.arena_region], self.self_test_total, self.self_test_passed)
        out += _pack_str(self.board_id) + _pack_str(self.runtime)
        out += struct.pack("<BB", len(self.inputs), len(self.outputs))
        out += b"".join(t.pack() for t in (*self.inputs, *self.outputs))
        out += struct.pack("<B", self.setup_status) + _pack_str(self.setup_message)
        out += struct.pack("<IB", self.arena_needed_bytes, len(self.versions))
        return out + b"".join(_pack_str(k) + _pack_str(v) for k, v in self.versions.items())


def _pack_str(s: str) -> bytes:
    raw = s.encode()[:255]
    return bytes([len(raw)]) + raw


class _Reader:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def take(self, fmt: str) -> tuple:
        size = struct.calcsize(fmt)
        if self.at + size > len(self.data):
            raise ProtocolError("payload too short")
        values = struct.unpack_from(fmt, self.data, self.at)
        self.at += size
        return values

    def raw(self, n: int) -> bytes:
        if self.at + n > len(self.data):
            raise ProtocolError("payload too short")
        self.at += n
        return self.data[self.at - n:self.at]

    def end(self) -> None:
        if self.at != len(self.data):
            raise ProtocolError(f"{len(self.data) - self.at} bytes more than the payload holds")

    def string(self) -> str:
        (n,) = self.take("<B")
        return self.raw(n).decode(errors="replace")

    def tensor(self) -> TensorInfo:
        code, rank = self.take("<BB")
        shape = self.take(f"<{rank}i") if rank else ()
        scale, zp, nbytes = self.take("<fiI")
        return TensorInfo(TENSOR_TYPES.get(code, f"type{code}"), tuple(shape), scale, zp, nbytes)


def parse_hello(payload: bytes) -> Hello:
    r = _Reader(payload)
    (version,) = r.take("<H")
    if version != PROTOCOL_VERSION:
        # Another version may lay out the rest differently: say so before anything else fails to parse.
        raise DeviceError(version_mismatch(version))
    flags, boot_id = r.take("<HI")
    sha = r.raw(32).hex()
    cpu, arena, used, region, st_total, st_passed = r.take("<IIIBHH")
    board, runtime = r.string(), r.string()
    n_in, n_out = r.take("<BB")
    ins = tuple(r.tensor() for _ in range(n_in))
    outs = tuple(r.tensor() for _ in range(n_out))
    (status,) = r.take("<B")
    message = r.string()
    needed, n_versions = r.take("<IB")
    versions = {}
    for _ in range(n_versions):
        key = r.string()
        versions[key] = r.string()
    r.end()
    return Hello(version, flags, boot_id, sha, cpu, arena, used, {0: "sram", 1: "psram"}.get(region, "host"),
                 st_total, st_passed, board, runtime, ins, outs, status, message, needed, versions)


_MISSING = re.compile(r"missing:\s*(\d+)")


def arena_missing_bytes(log: str) -> int | None:
    """How many bytes TFLM's allocator said it lacked ("Failed to resize buffer. Requested: N, available M,
    missing: K"), from the first such line; None when the log does not say. The device's C module parses the
    same way (tf_setup_log_missing)."""
    m = _MISSING.search(log)
    return int(m.group(1)) if m else None


@dataclass(frozen=True)
class InferResult:
    latency_us: int
    cycles: int
    output: bytes


def parse_infer_result(payload: bytes) -> InferResult:
    r = _Reader(payload)
    status, us, cycles = r.take("<BII")
    _check_status(status, "INFER")
    return InferResult(us, cycles, payload[r.at:])


MAX_BENCH_RUNS = 1000  # what the firmware's response buffer holds (timings and cycles of each run, then an output)


def bench_request(warmup: int, runs: int) -> bytes:
    return struct.pack("<HH", warmup, runs)


@dataclass(frozen=True)
class BenchResult:
    latency_us: tuple[int, ...]
    cycles: tuple[int, ...]


def parse_bench_result(payload: bytes) -> BenchResult:
    r = _Reader(payload)
    status, runs = r.take("<BH")
    _check_status(status, "BENCH")
    result = BenchResult(r.take(f"<{runs}I"), r.take(f"<{runs}I"))
    r.end()
    return result


@dataclass(frozen=True)
class ProfileResult:
    tick_hz: int
    ticks: tuple[int, ...]  # per op of the last Invoke, in op order


def parse_profile_result(payload: bytes) -> ProfileResult:
    r = _Reader(payload)
    status, tick_hz, n = r.take("<BIH")
    _check_status(status, "PROFILE")
    result = ProfileResult(tick_hz, r.take(f"<{n}I"))
    r.end()
    return result


TENSOR_CHUNK_BYTES = 4096  # what the host asks for per TENSOR_READ; the device may send fewer


def tensor_read_request(op: int, index: int, offset: int, length: int) -> bytes:
    return struct.pack("<HBIH", op, index, offset, length)


@dataclass(frozen=True)
class TensorData:
    dtype: str
    total: int  # the tensor's bytes
    offset: int
    data: bytes


def parse_tensor_data(payload: bytes) -> TensorData:
    r = _Reader(payload)
    status, code, total, offset = r.take("<BBII")
    _check_status(status, "TENSOR_READ")
    return TensorData(TENSOR_TYPES.get(code, f"type{code}"), total, offset, payload[r.at:])


def parse_error(payload: bytes) -> tuple[int, str]:
    r = _Reader(payload)
    (code,) = r.take("<B")
    return code, r.string()


def _check_status(status: int, what: str) -> None:
    if status:
        # This tinyflow's firmware reports failures with an ERROR frame and always sends status 0.
        raise DeviceError(f"the device answered {what} with status {status}, which this tinyflow's firmware never "
                          f"sends: the firmware is from another tinyflow; {REFLASH}")
