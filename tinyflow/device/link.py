"""The host side of the serial protocol over a port: requests, bounded retries, timeouts, resets.

Every wait has a bound. A request that gets no valid answer is sent again with the same sequence
number (the device answers a repeat from its cache, so nothing runs twice); after ``retries`` timed-out
tries the link is declared gone. Recovery costs round trips, not timeouts: the request is resent at once
when the device NAKs a damaged chunk or when a damaged chunk arrives where its answer was due, and the
timeout of a message type follows the round-trip times of its recent answers (Jacobson/Karels, with a
floor, the transfer time on top, and the caller's timeout as the ceiling the last try always waits). A
HELLO with sequence 0 in the middle of a conversation means the device rebooted: ``DeviceReset`` carries
the new HELLO so the caller can resume. Bytes that are not frames (boot logs, printf) go to ``on_log``
line by line.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Protocol, TypeVar

from ..errors import DeviceError, InputError
from ..protocol import (
    MAX_BENCH_RUNS,
    REFLASH,
    TENSOR_CHUNK_BYTES,
    BenchResult,
    Decoder,
    Frame,
    Garbled,
    Hello,
    InferResult,
    Msg,
    ProfileResult,
    ProtocolError,
    TensorData,
    bench_request,
    encode_frame,
    parse_bench_result,
    parse_error,
    parse_hello,
    parse_infer_result,
    parse_profile_result,
    parse_tensor_data,
    tensor_read_request,
)

DEFAULT_TIMEOUT_S = 2.0  # the longest wait for one answer, on top of transfer time
DEFAULT_RETRIES = 3
# The shortest adaptive timeout: a loaded host can stall a process for tens of milliseconds, and a
# timeout shorter than a stall resends for nothing (harmless, the device answers from its cache, but noisy).
MIN_TIMEOUT_S = 0.2

# What an ERROR code means for the user, and what to do about it.
_ERROR_ADVICE = {
    1: f"the firmware is from another tinyflow; {REFLASH}",
    2: f"the firmware was generated for another model or tinyflow; {REFLASH}",
    3: "the model failed on the device: run `tinyflow measure -v` to see its log, and check the arena",
    4: "ask for fewer runs (--runs), within the range the device names",
    5: "nothing to do: this firmware cannot time single ops",
    6: "per-layer comparison needs a firmware that keeps every tensor: build it with TINYFLOW_KEEP_TENSORS "
       "defined and an arena that holds every tensor at once",
}


T = TypeVar("T")


def _parsed(what: str, parse: Callable[[bytes], T], payload: bytes) -> T:
    """Parse a response payload; a malformed one is the firmware's fault, in one sentence with the fix."""
    try:
        return parse(payload)
    except ProtocolError as e:
        raise DeviceError(f"the device sent a malformed {what} ({e}): its firmware speaks another protocol; "
                          f"{REFLASH}") from None


class Port(Protocol):
    """What the link needs from a serial port (pyserial's Serial fits)."""

    timeout: float | None

    def read(self, size: int) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


class DeviceReset(DeviceError):
    """The device rebooted mid-conversation (an unsolicited HELLO arrived)."""

    def __init__(self, hello: Hello):
        super().__init__(f"the device reset (new boot id {hello.boot_id})")
        self.hello = hello


class DeviceTimeout(DeviceError):
    """Nothing valid came back in time (as opposed to an answer that is wrong)."""


class Link:
    def __init__(self, port: Port, timeout_s: float = DEFAULT_TIMEOUT_S, retries: int = DEFAULT_RETRIES,
                 bytes_per_s: float = 11_520.0, on_log: Callable[[str], None] | None = None):
        self.port = port
        self.timeout_s = timeout_s
        self.retries = retries
        self.bytes_per_s = bytes_per_s  # slowest expected link rate: transfer time is added to timeouts
        self.on_log = on_log or (lambda line: None)
        self._decoder = Decoder()
        self._seq = 0
        self._log_tail = b""
        self.retried = 0  # resends of a request (for reports and tests)
        self.fast_resends = 0  # of those, resends on a NAK or a damaged chunk, without waiting
        self.timeouts = 0  # of those, resends after a timeout
        self.min_timeout_s = MIN_TIMEOUT_S
        self.max_fast_resends = 2 * (retries + 1)  # per request: a line spewing noise still ends in a timeout
        self.device: Hello | None = None  # the last HELLO seen: what the outputs should look like
        self._pending: deque[Frame | Garbled] = deque()
        self._rtt: dict[int, tuple[float, float]] = {}  # per message type: smoothed round trip, its variation
        self._backoff: dict[int, float] = {}  # per message type: doubled by a timeout, 1 after a clean answer

    def _next_seq(self) -> int:
        self._seq = self._seq % 65535 + 1
        return self._seq

    def _log(self, chunk: bytes) -> None:
        text = self._log_tail + chunk
        *lines, self._log_tail = text.split(b"\n")
        for line in lines:
            line = line.strip(b"\r")
            if line:
                self.on_log(line.decode(errors="replace"))

    def _next(self, deadline: float) -> Frame | Garbled | None:
        """The next frame or damaged chunk from the device; None once ``deadline`` passes."""
        while not self._pending:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            # Block for the first byte only, then take whatever else has arrived: reading a fixed large
            # count would wait out the whole timeout on every response.
            self.port.timeout = min(left, 0.05)
            data = self.port.read(1)
            if not data:
                continue
            waiting = getattr(self.port, "in_waiting", 0)
            if waiting:
                data += self.port.read(waiting)
            for item in self._decoder.feed(data):
                if isinstance(item, Frame):
                    self._pending.append(item)
                else:
                    self._log(item)
                    if isinstance(item, Garbled):
                        self._pending.append(item)
        return self._pending.popleft()

    def _frames(self, deadline: float) -> Iterator[Frame]:
        while (item := self._next(deadline)) is not None:
            if isinstance(item, Frame):
                yield item

    def timeout_for(self, msg_type: int, ceiling_s: float | None = None) -> float:
        """How long to wait for an answer to ``msg_type`` now (without the transfer time)."""
        ceiling = ceiling_s or self.timeout_s
        if msg_type not in self._rtt:
            return ceiling  # nothing measured yet: the caller's own bound
        srtt, var = self._rtt[msg_type]
        rto = max(srtt + 4 * var, self.min_timeout_s) * self._backoff.get(msg_type, 1.0)
        return min(rto, ceiling)

    def _measured(self, msg_type: int, rtt: float) -> None:
        if msg_type in self._rtt:
            srtt, var = self._rtt[msg_type]
            var = 0.75 * var + 0.25 * abs(srtt - rtt)
            srtt = 0.875 * srtt + 0.125 * rtt
        else:
            srtt, var = rtt, rtt / 2
        self._rtt[msg_type] = (srtt, var)
        self._backoff[msg_type] = 1.0

    def wait_hello(self, timeout_s: float) -> Hello:
        """Wait for the HELLO a device sends at boot (asking for one now and then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seq = self._next_seq()
            self.port.write(encode_frame(Msg.HELLO_REQ, seq))
            for f in self._frames(min(deadline, time.monotonic() + 0.5)):
                if f.type == Msg.HELLO and f.seq in (0, seq):
                    return self._hello_from(f)
        raise DeviceTimeout(f"no HELLO from the device within {timeout_s:.0f} s: is the tinyflow firmware running "
                          "on it, at this baud rate?")

    def _hello_from(self, f: Frame) -> Hello:
        self.device = _parsed("HELLO", parse_hello, f.payload)
        return self.device

    def request(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None) -> Frame:
        """Send one request and return its answer (of the answering type); an ERROR is a ``DeviceError``."""
        seq = self._next_seq()
        frame = encode_frame(msg_type, seq, payload)
        transfer = 2 * len(frame) / self.bytes_per_s
        ceiling = timeout_s or self.timeout_s
        wait = self.timeout_for(msg_type, ceiling)
        # Damaged chunks and NAKs still queued belong to an earlier request; frames stay (a reset HELLO).
        self._pending = deque(x for x in self._pending if isinstance(x, Frame) and x.type != Msg.NAK)
        timeouts = fast = 0
        self.port.write(frame)
        sent = time.monotonic()
        deadline = sent + wait + transfer
        while True:
            item = self._next(deadline)
            if item is None:
                if timeouts == self.retries:
                    raise DeviceTimeout(f"no valid answer to {Msg(msg_type).name} after {timeouts + 1} tries (the "
                                        f"last waited {wait + transfer:.1f} s): the link is gone or too noisy")
                timeouts += 1
                self.timeouts += 1
                self._backoff[msg_type] = min(2 * self._backoff.get(msg_type, 1.0), 64.0)
                # The last try waits the whole ceiling: a slow device is not a dead one.
                wait = ceiling if timeouts == self.retries else min(2 * wait, ceiling)
            elif isinstance(item, Garbled) or item.type == Msg.NAK:
                # The request or its answer was damaged on the line: resend now rather than wait it out.
                if fast == self.max_fast_resends:
                    continue
                fast += 1
                self.fast_resends += 1
            else:
                f = item
                if f.type == Msg.HELLO and f.seq == 0:
                    raise DeviceReset(self._hello_from(f))
                if f.seq != seq:
                    continue  # a stale answer to an earlier try
                if timeouts == fast == 0:  # Karn: only an answer to the one and only send times the link
                    self._measured(msg_type, time.monotonic() - sent)
                if f.type == Msg.ERROR:
                    code, message = _parsed("ERROR", parse_error, f.payload)
                    advice = _ERROR_ADVICE.get(code, f"an error code this tinyflow does not know; {REFLASH}")
                    raise DeviceError(f"the device refused {Msg(msg_type).name}: {message} (code {code}); {advice}")
                if f.type != msg_type | 0x80:
                    name = Msg(f.type).name if f.type in Msg._value2member_map_ else f"type 0x{f.type:02x}"
                    raise DeviceError(f"the device answered {Msg(msg_type).name} with {name}: its firmware speaks "
                                      f"another protocol; {REFLASH}")
                return f
            self.retried += 1
            self.port.write(frame)
            deadline = time.monotonic() + wait + transfer

    def hello(self) -> Hello:
        return self._hello_from(self.request(Msg.HELLO_REQ))

    def infer(self, data: bytes, timeout_s: float | None = None) -> InferResult:
        r = _parsed("INFER_RESULT", parse_infer_result, self.request(Msg.INFER, data, timeout_s).payload)
        if self.device is not None:
            want = sum(t.bytes for t in self.device.outputs)
            if len(r.output) != want:
                raise DeviceError(f"the device answered INFER with {len(r.output)} output bytes where its HELLO "
                                  f"promised {want}: its firmware is broken or from another tinyflow; {REFLASH}")
        return r

    def bench(self, warmup: int, runs: int, timeout_s: float | None = None) -> BenchResult:
        if not 1 <= runs <= MAX_BENCH_RUNS or not 0 <= warmup <= 65535:
            raise InputError(f"BENCH takes 1 to {MAX_BENCH_RUNS} runs and 0 to 65535 warm-up runs, not {runs} and "
                             f"{warmup}: choose --runs and --warmup in that range")
        f = self.request(Msg.BENCH, bench_request(warmup, runs), timeout_s)
        b = _parsed("BENCH_RESULT", parse_bench_result, f.payload)
        if len(b.latency_us) != runs:
            raise DeviceError(f"the device answered BENCH with {len(b.latency_us)} runs where {runs} were asked: its "
                              f"firmware is broken or from another tinyflow; {REFLASH}")
        return b

    def profile(self) -> ProfileResult:
        return _parsed("PROFILE_RESULT", parse_profile_result, self.request(Msg.PROFILE).payload)

    def tensor(self, op: int, index: int = 0, chunk: int = TENSOR_CHUNK_BYTES) -> TensorData:
        """Output ``index`` of op ``op`` after the last inference, read in chunks of at most ``chunk`` bytes."""
        data = bytearray()
        total, dtype = None, ""
        while total is None or len(data) < total:
            f = self.request(Msg.TENSOR_READ, tensor_read_request(op, index, len(data), chunk))
            t = _parsed("TENSOR_DATA", parse_tensor_data, f.payload)
            if t.offset != len(data) or (total is not None and t.total != total) or \
                    (not t.data and t.total > len(data)) or len(t.data) > chunk:
                raise DeviceError(f"the device answered TENSOR_READ of op {op} at byte {len(data)} with {len(t.data)} "
                                  f"bytes at {t.offset} of {t.total}: its firmware is broken or from another tinyflow; "
                                  f"{REFLASH}")
            total, dtype = t.total, t.dtype
            data += t.data
        return TensorData(dtype, total, 0, bytes(data))
