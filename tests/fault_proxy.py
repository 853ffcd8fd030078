"""A serial line with faults: a pty the harness opens, forwarding to a (simulated) board's pty in a thread.

Faults, chosen per test and deterministic: garbage between frames, a dropped byte, a flipped bit, a
response held back past the harness's timeout, the board reset mid-run, and the line going dead.
``ScriptedDevice`` is a fake board on a pty that answers with exactly the frames a test gives it.
"""

from __future__ import annotations

import os
import random
import select
import threading
import time
import tty
from collections.abc import Callable
from dataclasses import dataclass, field

from tinyflow.protocol import Decoder, Frame


@dataclass
class Faults:
    garbage_every: int = 0  # device->host: every n-th chunk gets noise first (text, binary, zeros)
    drop_request_bytes: int = 0  # host->device: drop one byte in this many chunks
    drop_response_bytes: int = 0  # device->host: drop one byte in this many chunks
    flip_response_bits: int = 0  # device->host: flip a bit in this many chunks
    delay_once_s: float = 0.0  # device->host: hold the 5th chunk this long, once
    reset_after_chunks: int = 0  # reset the board after this many device->host chunks
    dead_after_chunks: int = 0  # stop forwarding anything after this many device->host chunks
    # Noise at a rate instead of a count: each chunk, either way, is hit with probability 1/one_in by one of
    # `kinds` (drop a byte, flip a bit, garbage before it, lose the whole chunk). A chunk is about one frame.
    one_in: float = 0.0
    kinds: tuple[str, ...] = ("drop", "flip", "garbage", "lose")
    seed: int = 0
    counts: dict[str, int] = field(default_factory=dict)


class FaultProxy:
    def __init__(self, device_path: str, faults: Faults, reset: Callable[[], None] | None = None):
        self.faults = faults
        self.reset = reset
        self.rng = random.Random(faults.seed)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self._slave = slave
        self.path = os.ttyname(slave)
        self.device = os.open(device_path, os.O_RDWR | os.O_NOCTTY)
        tty.setraw(self.device)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._down = 0  # device->host chunks seen
        self._up = 0
        self._delayed = False

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        for fd in (self.master, self._slave, self.device):
            os.close(fd)

    def _count(self, what: str) -> None:
        self.faults.counts[what] = self.faults.counts.get(what, 0) + 1

    def _mangle(self, chunk: bytes, drops: int, flips: int, key: str) -> bytes:
        data = bytearray(chunk)
        if drops and self.faults.counts.get(f"drop-{key}", 0) < drops and len(data) > 4 and self.rng.random() < 0.3:
            del data[self.rng.randrange(len(data))]
            self._count(f"drop-{key}")
        if flips and self.faults.counts.get("flip", 0) < flips and len(data) > 4 and self.rng.random() < 0.3:
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
            self._count("flip")
        return bytes(data)

    def _noise(self, chunk: bytes, direction: str) -> bytes | None:
        if not self.faults.one_in or len(chunk) < 2 or self.rng.random() >= 1 / self.faults.one_in:
            return chunk
        kind = self.rng.choice(self.faults.kinds)
        self._count(f"{kind}-{direction}")
        data = bytearray(chunk)
        if kind == "drop":
            del data[self.rng.randrange(len(data))]
        elif kind == "flip":
            data[self.rng.randrange(len(data))] ^= 1 << self.rng.randrange(8)
        elif kind == "garbage":
            data[:0] = self.rng.choice([b"E (99) noise\r\n", bytes(self.rng.randrange(256) for _ in range(9))])
        else:
            return None
        return bytes(data)

    def _down_chunk(self, chunk: bytes) -> bytes | None:
        f = self.faults
        self._down += 1
        if f.dead_after_chunks and self._down > f.dead_after_chunks:
            self._count("dead")
            return None
        if f.reset_after_chunks and self._down == f.reset_after_chunks and self.reset:
            self.reset()
            self._count("reset")
        if f.delay_once_s and not self._delayed and self._down == 5:
            self._delayed = True
            time.sleep(f.delay_once_s)
            self._count("delay")
        chunk = self._mangle(chunk, f.drop_response_bytes, f.flip_response_bits, "response")
        chunk = self._noise(chunk, "response")
        if chunk is None:
            return None
        if f.garbage_every and self._down % f.garbage_every == 0:
            noise = self.rng.choice([b"E (1234) wifi: noise\r\n", bytes(self.rng.randrange(256) for _ in range(9)),
                                     b"\x00\x00\x07\x01\x00", b"Guru Meditation? no, just text\n"])
            chunk = noise + chunk
            self._count("garbage")
        return chunk

    def _run(self) -> None:
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self.device], [], [], 0.05)
            for fd in ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    continue
                if fd == self.master:
                    self._up += 1
                    if self.faults.dead_after_chunks and self._down > self.faults.dead_after_chunks:
                        continue
                    out = self._noise(self._mangle(chunk, self.faults.drop_request_bytes, 0, "request"), "request")
                    if out:
                        os.write(self.device, out)
                else:
                    out = self._down_chunk(chunk)
                    if out:
                        os.write(self.master, out)


class ScriptedDevice:
    """A fake board on a real pty: each request frame gets exactly the bytes ``answer(frame)`` returns.

    For the cases a real firmware never produces (another protocol version, a short output, status != 0),
    so the host's real ``Link`` and harness read them through a real serial port.
    """

    def __init__(self, answer: Callable[[Frame], bytes | None], boot: bytes = b""):
        self.answer = answer
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        self.requests: list[Frame] = []
        self._boot = boot
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ScriptedDevice:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        os.close(self.master)
        os.close(self._slave)

    def _run(self) -> None:
        decoder = Decoder()
        if self._boot:
            os.write(self.master, self._boot)
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 65536)
            except OSError:
                continue
            for item in decoder.feed(data):
                if isinstance(item, Frame):
                    self.requests.append(item)
                    out = self.answer(item)
                    if out:
                        os.write(self.master, out)
