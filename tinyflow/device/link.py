"""The host side of the serial protocol over a port: requests, bounded retries, timeouts, resets.

Every wait has a bound. A request that gets no valid answer is sent again with the same sequence
number (the device answers a repeat from its cache, so nothing runs twice); after ``retries`` more tries
the link is declared gone. A HELLO with sequence 0 in the middle of a conversation means the device
rebooted: ``DeviceReset`` carries the new HELLO so the caller can resume. Bytes that are not frames
(boot logs, printf) go to ``on_log`` line by line.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Protocol

from ..errors import DeviceError
from ..protocol import (
    Decoder,
    Frame,
    Hello,
    Msg,
    ProtocolError,
    bench_request,
    encode_frame,
    parse_bench_result,
    parse_error,
    parse_hello,
    parse_infer_result,
    parse_profile_result,
)

DEFAULT_TIMEOUT_S = 2.0  # for a small request/response, on top of transfer time
DEFAULT_RETRIES = 3


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
        self.retried = 0  # requests sent more than once (for reports and tests)

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

    def _frames(self, deadline: float) -> Iterator[Frame]:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return
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
                    yield item
                else:
                    self._log(item)

    def wait_hello(self, timeout_s: float) -> Hello:
        """Wait for the HELLO a device sends at boot (asking for one now and then)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            seq = self._next_seq()
            self.port.write(encode_frame(Msg.HELLO_REQ, seq))
            for f in self._frames(min(deadline, time.monotonic() + 0.5)):
                if f.type == Msg.HELLO and f.seq in (0, seq):
                    return parse_hello(f.payload)
        raise DeviceError(f"no HELLO from the device within {timeout_s:.0f} s: is the tinyflow firmware running "
                          "on it, at this baud rate?")

    def request(self, msg_type: int, payload: bytes = b"", timeout_s: float | None = None) -> Frame:
        seq = self._next_seq()
        frame = encode_frame(msg_type, seq, payload)
        wait = (timeout_s or self.timeout_s) + 2 * len(frame) / self.bytes_per_s
        for attempt in range(self.retries + 1):
            if attempt:
                self.retried += 1
            self.port.write(frame)
            for f in self._frames(time.monotonic() + wait):
                if f.type == Msg.HELLO and f.seq == 0:
                    raise DeviceReset(parse_hello(f.payload))
                if f.seq != seq:
                    continue  # a stale answer to an earlier try
                if f.type == Msg.ERROR:
                    code, message = parse_error(f.payload)
                    raise DeviceError(f"the device refused {Msg(msg_type).name}: {message} (code {code})")
                return f
        raise DeviceError(f"no valid answer to {Msg(msg_type).name} after {self.retries + 1} tries "
                          f"({wait:.1f} s each): the link is gone or too noisy")

    def hello(self) -> Hello:
        return parse_hello(self.request(Msg.HELLO_REQ).payload)

    def infer(self, data: bytes, timeout_s: float | None = None):
        f = self.request(Msg.INFER, data, timeout_s)
        try:
            return parse_infer_result(f.payload)
        except ProtocolError as e:
            raise DeviceError(f"bad INFER result from the device: {e}") from None

    def bench(self, warmup: int, runs: int, timeout_s: float | None = None):
        return parse_bench_result(self.request(Msg.BENCH, bench_request(warmup, runs), timeout_s).payload)

    def profile(self):
        return parse_profile_result(self.request(Msg.PROFILE).payload)
