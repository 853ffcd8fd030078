"""The serial protocol: the Python codec, and the firmware's C module driven over a real pty by the harness link."""

from __future__ import annotations

import random
import shutil
import struct
import subprocess
import time
from pathlib import Path

import pytest
import serial

from tests.fault_proxy import ScriptedDevice
from tinyflow.device.link import DeviceTimeout, Link
from tinyflow.errors import DeviceError, InputError
from tinyflow.paths import templates_dir
from tinyflow.protocol import (
    PROTOCOL_VERSION,
    Decoder,
    Frame,
    Hello,
    Msg,
    ProtocolError,
    TensorInfo,
    cobs_decode,
    cobs_encode,
    decode_body,
    encode_frame,
)

HERE = Path(__file__).parent


def test_cobs_round_trips_and_never_emits_zero():
    rng = random.Random(0)
    for n in (0, 1, 253, 254, 255, 508, 5000):
        for _ in range(20):
            data = bytes(rng.choice([0, 0, 255, rng.randrange(256)]) for _ in range(n))
            enc = cobs_encode(data)
            assert 0 not in enc and cobs_decode(enc) == data


def test_decoder_skips_logs_and_noise_between_frames():
    dec = Decoder()
    stream = (b"ESP-ROM:esp32s3\r\nboot: hello\n" + encode_frame(Msg.HELLO, 0, b"a\x00b") + b"\x13\x37garbage"
              + encode_frame(Msg.INFER, 9, bytes(range(256)) * 3))
    items = []
    for i in range(0, len(stream), 5):
        items += dec.feed(stream[i:i + 5])
    frames = [x for x in items if isinstance(x, Frame)]
    assert [(f.type, f.seq) for f in frames] == [(Msg.HELLO, 0), (Msg.INFER, 9)]
    assert frames[1].payload == bytes(range(256)) * 3
    assert b"boot: hello" in b"".join(x for x in items if isinstance(x, bytes))


def test_a_flipped_bit_fails_the_crc():
    body = encode_frame(Msg.INFER, 1, b"payload")[1:-1]
    bad = bytearray(body)
    bad[4] ^= 0x01
    with pytest.raises(ProtocolError):
        decode_body(bytes(bad))


@pytest.fixture(scope="module")
def device_binary(tmp_path_factory) -> Path:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    out = tmp_path_factory.mktemp("dev") / "pty_device"
    common = templates_dir() / "common"
    subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{common}",
                    str(HERE / "c" / "pty_device.cc"), str(common / "tinyflow_protocol.cc"), "-o", str(out)],
                   check=True, capture_output=True, text=True)
    return out


@pytest.fixture()
def device(device_binary):
    proc = subprocess.Popen([str(device_binary), "7"], stdout=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    port = serial.Serial(path, 115200, timeout=0.05)
    logs: list[str] = []
    yield Link(port, timeout_s=1.0, retries=2, bytes_per_s=1e6, on_log=logs.append), logs
    port.close()
    proc.kill()
    proc.wait()


def test_protocol_module_compiles_warning_free_for_32_and_64_bit(tmp_path):
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    src = templates_dir() / "common" / "tinyflow_protocol.cc"
    for flags in (["-m64"], ["-m32"]):
        proc = subprocess.run(["g++", "-std=c++11", "-Wall", "-Wextra", "-Werror", "-Wconversion", *flags, "-c",
                               str(src), "-o", str(tmp_path / "p.o")], capture_output=True, text=True)
        if proc.returncode and "-m32" in flags and "bits/" in proc.stderr:
            continue  # no 32-bit C library on this machine; the 64-bit build still ran
        assert proc.returncode == 0, proc.stderr


def test_c_module_over_a_real_pty(device):
    link, logs = device
    hello = link.wait_hello(5)
    assert hello.version == PROTOCOL_VERSION and hello.boot_id == 7 and hello.board_id == "pty-test"
    assert hello.inputs[0].shape == (1, 16) and hello.inputs[0].zero_point == -3
    assert abs(hello.outputs[0].scale - 0.25) < 1e-9 and hello.self_test_passed == 2
    data = bytes(range(1, 17))
    r = link.infer(data)
    link.hello()  # anything read after the log line flushes it to the log
    assert "I (1234) app: inference done" in logs
    assert r.output == bytes([sum(data) % 256, 16, 1, 16])
    assert r.latency_us == 100 + sum(data) % 7 and r.cycles == r.latency_us * 240

    b = link.bench(warmup=2, runs=5)
    assert b.latency_us == (100 + sum(data) % 7,) * 5 and len(b.cycles) == 5

    p = link.profile()
    assert p.tick_hz == 240_000_000 and p.ticks == (1000, 2000, 3000)


def test_c_module_refuses_a_wrong_input_size(device):
    link, _ = device
    link.wait_hello(5)
    with pytest.raises(DeviceError, match="input size"):
        link.infer(b"short")


def test_c_module_answers_a_retry_from_its_cache(device):
    link, _ = device
    link.wait_hello(5)
    first = link.infer(bytes(16))
    # Send the very same frame again by hand: the device must answer without running inference again.
    seq = link._seq
    link.port.write(encode_frame(Msg.INFER, seq, bytes([9] * 16)))
    again = next(f for f in link._frames(time.monotonic() + 2) if f.seq == seq)
    assert again.type == Msg.INFER_RESULT
    assert again.payload[9:] == first.output  # the cached answer, not a run on the new bytes


# ---- a device that answers with well-formed but unexpected frames ----------------------------------------

_IN = TensorInfo("int8", (1, 16), 0.5, -3, 16)
_OUT = TensorInfo("int8", (1, 4), 0.25, 7, 4)


def _hello(version: int = PROTOCOL_VERSION) -> bytes:
    return Hello(version, 0, 5, "00" * 32, 240, 4096, 3000, "sram", 0, 0, "fake", "fake runtime", (_IN,),
                 (_OUT,)).pack()


def _ok(req: Frame) -> bytes | None:
    """Well-behaved answers, for the requests a case does not replace."""
    if req.type == Msg.HELLO_REQ:
        return encode_frame(Msg.HELLO, req.seq, _hello())
    if req.type == Msg.INFER:
        return encode_frame(Msg.INFER_RESULT, req.seq, struct.pack("<BII", 0, 100, 0) + bytes(4))
    if req.type == Msg.BENCH:
        return encode_frame(Msg.BENCH_RESULT, req.seq, struct.pack("<BH2I2I", 0, 2, 100, 100, 0, 0))
    return encode_frame(Msg.PROFILE_RESULT, req.seq, struct.pack("<BIH2I", 0, 1000, 2, 5, 6))


def _answer(msg_type: int, payload: bytes, answer_type: int | None = None):
    def answer(req: Frame) -> bytes | None:
        if req.type == msg_type:
            return encode_frame(answer_type or (msg_type | 0x80), req.seq, payload)
        return _ok(req)
    return answer


def _call(link: Link, what: str):
    return {"hello": link.hello, "infer": lambda: link.infer(bytes(16)), "bench": lambda: link.bench(1, 2),
            "profile": link.profile}[what]()


UNEXPECTED = [
    # (request answered oddly, answer type, payload, what the message must say)
    ("hello", Msg.HELLO_REQ, None, _hello(7), "protocol version 7, this tinyflow speaks"),
    ("hello", Msg.HELLO_REQ, None, struct.pack("<H", 9) + b"\x01", "protocol version 9"),  # another layout
    ("hello", Msg.HELLO_REQ, None, _hello()[:50], "malformed HELLO"),
    ("bench", Msg.BENCH, None, struct.pack("<BH2I2I", 3, 2, 1, 1, 0, 0), "BENCH with status 3"),
    ("bench", Msg.BENCH, None, struct.pack("<BH", 0, 0), "0 runs where 2 were asked"),
    ("bench", Msg.BENCH, None, struct.pack("<BH2I", 0, 2, 1, 1), "malformed BENCH_RESULT"),
    ("bench", Msg.BENCH, None, struct.pack("<BH2I2I", 0, 2, 1, 1, 0, 0) + b"xx", "malformed BENCH_RESULT"),
    ("profile", Msg.PROFILE, None, struct.pack("<BIH", 1, 1000, 0), "PROFILE with status 1"),
    ("profile", Msg.PROFILE, None, struct.pack("<BIH", 0, 1000, 3) + bytes(4), "malformed PROFILE_RESULT"),
    ("infer", Msg.INFER, None, struct.pack("<BII", 0, 1, 0) + bytes(2), "2 output bytes where its HELLO promised 4"),
    ("infer", Msg.INFER, None, struct.pack("<BII", 2, 1, 0) + bytes(4), "INFER with status 2"),
    ("infer", Msg.INFER, None, b"\x00\x01", "malformed INFER_RESULT"),
    ("infer", Msg.INFER, Msg.BENCH_RESULT, b"", "answered INFER with BENCH_RESULT"),
    ("infer", Msg.INFER, 0x99, b"", "answered INFER with type 0x99"),
    ("infer", Msg.INFER, Msg.ERROR, b"\x02", "malformed ERROR"),
    ("infer", Msg.INFER, Msg.ERROR, b"\x2a\x03abc", "abc (code 42); an error code this tinyflow does not know"),
]


@pytest.mark.parametrize("call, msg_type, answer_type, payload, message", UNEXPECTED)
def test_an_unexpected_answer_is_one_device_error_naming_the_fix(call, msg_type, answer_type, payload, message):
    with ScriptedDevice(_answer(msg_type, payload, answer_type)) as dev:
        port = serial.Serial(dev.path, 115200, timeout=0.05)
        try:
            link = Link(port, timeout_s=0.5, retries=1, bytes_per_s=1e6)
            if call != "hello":
                link.wait_hello(5)
            with pytest.raises(DeviceError) as e:
                _call(link, call)
        finally:
            port.close()
    text = str(e.value)
    assert message in text and "\n" not in text and "flash the firmware with this tinyflow" in text
    assert not isinstance(e.value, DeviceTimeout)  # it was answered: the answer is wrong, not missing


def test_a_boot_hello_of_another_version_is_the_version_message():
    with ScriptedDevice(_answer(Msg.HELLO_REQ, _hello(2)), boot=encode_frame(Msg.HELLO, 0, _hello(2))) as dev:
        port = serial.Serial(dev.path, 115200, timeout=0.05)
        try:
            with pytest.raises(DeviceError, match="protocol version 2, this tinyflow speaks"):
                Link(port, timeout_s=0.5, bytes_per_s=1e6).wait_hello(5)
        finally:
            port.close()


# ---- the firmware's C server and the simulator's Python server answer every byte stream alike -----------


@pytest.fixture(scope="module")
def protocol_library() -> Path:
    from tinyflow.device.simulator import build_protocol_library

    lib = build_protocol_library()
    if lib is None:
        pytest.skip("g++ is not installed")
    return lib


@pytest.fixture(scope="module")
def server_models(corpus_model) -> dict[str, tuple[bytes, int]]:
    from tinyflow.graph.reader import read_graph
    from tinyflow.plan import plan_graph

    models = {}
    for name in ("mlp", "dense_autoencoder"):
        data = corpus_model(name)
        models[name] = data, plan_graph(read_graph(data), 8).min_arena_bytes
    return models


def _servers(lib: Path, data: bytes, arena: int, firmware_buffers: bool):
    """A fresh C server and a fresh Python server, each on its own TFLM interpreter, recording what they send."""
    from tinyflow.device.simulator import CServer, Model, PyServer, SimBoard

    pairs = []
    for make in (lambda b: CServer(lib, b), PyServer):
        sent = bytearray()
        board = SimBoard(Model(data, arena), sent.extend)
        if firmware_buffers:  # as tinyflow's firmware sizes them: room for exactly 1000 runs and one output
            out = board.model.output_bytes
            board.body_bytes = 7 + 3 + 8 * 1000 + out + 4
            board.bench_limit = min(1000, (board.body_bytes - 14 - out) // 8)
        pairs.append((make(board), sent))
    return pairs


def _normalised(sent: bytes) -> list[tuple[int, int, bytes]]:
    """The frames sent, with what legitimately differs between two runs zeroed: boot ids and timings."""
    frames, dec = [], Decoder()
    for item in dec.feed(bytes(sent)):
        assert isinstance(item, Frame), f"a server sent bytes that are not a frame: {item!r}"
        p = bytearray(item.payload)
        if item.type == Msg.HELLO:
            p[4:8] = bytes(4)
        elif item.type == Msg.INFER_RESULT:
            p[1:9] = bytes(8)
        elif item.type == Msg.BENCH_RESULT:
            runs = struct.unpack_from("<H", p, 1)[0]
            p[3:3 + 4 * runs] = bytes(4 * runs)
        frames.append((item.type, item.seq, bytes(p)))
    return frames


def _bench(seq: int, runs: int, warmup: int = 0) -> bytes:
    return encode_frame(Msg.BENCH, seq, struct.pack("<HH", warmup, runs))


def _streams(in_bytes: int, out_bytes: int) -> list[tuple[str, list[bytes], list[tuple[int, int]]]]:
    """(case, chunks fed one after another, the (type, code or seq) answers expected)."""
    x = bytes((7 * i) % 256 for i in range(in_bytes))
    infer = encode_frame(Msg.INFER, 1, x)
    bad_crc = bytearray(infer)
    bad_crc[5] ^= 0x10
    wrong_len = bytearray(encode_frame(Msg.BENCH, 4, bytes(4)))
    err, ok = Msg.ERROR, None
    nak = (Msg.NAK, None)
    band = 1000 + out_bytes // 8  # the old C check let these through and failed in Invoke()
    return [
        ("hello", [encode_frame(Msg.HELLO_REQ, 1)], [(Msg.HELLO, ok)]),
        ("infer", [infer], [(Msg.INFER_RESULT, ok)]),
        ("infer split byte by byte", [bytes([b]) for b in infer], [(Msg.INFER_RESULT, ok)]),
        ("two frames in one chunk", [infer + encode_frame(Msg.HELLO_REQ, 2)],
         [(Msg.INFER_RESULT, ok), (Msg.HELLO, ok)]),
        ("repeat answered from the cache", [infer, encode_frame(Msg.INFER, 1, bytes(in_bytes))],
         [(Msg.INFER_RESULT, ok)] * 2),
        ("same seq, other type runs", [infer, encode_frame(Msg.PROFILE, 1)], [(Msg.INFER_RESULT, ok), (err, 5)]),
        ("repeated HELLO_REQ answered afresh", [encode_frame(Msg.HELLO_REQ, 3)] * 2, [(Msg.HELLO, ok)] * 2),
        ("infer one byte short", [encode_frame(Msg.INFER, 1, x[:-1])], [(err, 2)]),
        ("infer one byte long", [encode_frame(Msg.INFER, 1, x + b"\x01")], [(err, 2)]),
        ("infer far beyond the receive buffer", [encode_frame(Msg.INFER, 1, x * 8 + bytes(300))], [(err, 2)]),
        ("infer empty", [encode_frame(Msg.INFER, 1)], [(err, 2)]),
        ("infer with no zero byte, beyond 254", [encode_frame(Msg.INFER, 1, b"\x01" * 600)], [(err, 2)]),
        *((f"hello request with {n} non-zero payload bytes", [encode_frame(Msg.HELLO_REQ, 1, b"\x02" * n)],
           [(Msg.HELLO, ok)]) for n in (253, 254, 255, 508, 3000)),
        ("bench 0 runs", [_bench(1, 0)], [(err, 4)]),
        ("bench 1 run", [_bench(1, 1, warmup=2)], [(Msg.BENCH_RESULT, ok)]),
        ("bench 1000 runs", [_bench(1, 1000)], [(Msg.BENCH_RESULT, ok)]),
        ("bench 1001 runs", [_bench(1, 1001)], [(err, 4)]),
        ("bench 1000 + outputs/8 runs", [_bench(1, max(band, 1001))], [(err, 4)]),
        ("bench 2046 runs", [_bench(1, 2046)], [(err, 4)]),
        ("bench 2047 runs", [_bench(1, 2047)], [(err, 4)]),
        ("bench 65535 runs", [_bench(1, 65535)], [(err, 4)]),
        ("bench payload too short", [encode_frame(Msg.BENCH, 1, b"\x01\x00\x01")], [(err, 2)]),
        ("bench payload too long", [encode_frame(Msg.BENCH, 1, bytes(5))], [(err, 2)]),
        ("profile", [encode_frame(Msg.PROFILE, 9)], [(err, 5)]),
        ("unknown request type", [encode_frame(0x06, 1)], [(err, 1)]),
        ("a device's type sent to the device", [encode_frame(Msg.INFER_RESULT, 1, bytes(9))], [(err, 1)]),
        ("type 0", [encode_frame(0x00, 1, b"abc")], [(err, 1)]),
        ("log text not yet delimited", [b"I (12) boot: noise\r\n"], []),
        ("log text", [b"I (12) boot: noise\r\n\x00"], [nak]),
        ("binary garbage", [bytes(random.Random(1).randrange(1, 256) for _ in range(300)) + b"\x00"], [nak]),
        ("zeros only", [bytes(50)], []),
        ("a bad CRC", [bytes(bad_crc)], [nak]),
        ("a truncated frame", [infer[:-9] + b"\x00"], [nak]),
        ("a length field that lies", [bytes(wrong_len[:3]) + b"\x09" + bytes(wrong_len[4:])], [nak]),
        ("a lone COBS code byte", [b"\x01\x00"], [nak]),
        ("garbage, then a good frame", [b"\x13\x37garbage\x00", encode_frame(Msg.HELLO_REQ, 6)],
         [nak, (Msg.HELLO, ok)]),
        ("tensor read", [encode_frame(Msg.TENSOR_READ, 1, struct.pack("<HBIH", 0, 0, 0, 4096))],
         [(Msg.TENSOR_DATA, ok)]),
        ("tensor read after an infer, in a chunk beyond the tensor", [
            infer, encode_frame(Msg.TENSOR_READ, 2, struct.pack("<HBIH", 1, 0, 5, 3)),
            encode_frame(Msg.TENSOR_READ, 3, struct.pack("<HBIH", 1, 0, 1 << 30, 100))],
         [(Msg.INFER_RESULT, ok), (Msg.TENSOR_DATA, ok), (Msg.TENSOR_DATA, ok)]),
        ("tensor read of no such op", [encode_frame(Msg.TENSOR_READ, 1, struct.pack("<HBIH", 999, 0, 0, 10))],
         [(err, 6)]),
        ("tensor read of no such output", [encode_frame(Msg.TENSOR_READ, 1, struct.pack("<HBIH", 0, 7, 0, 10))],
         [(err, 6)]),
        ("tensor read payload too short", [encode_frame(Msg.TENSOR_READ, 1, bytes(8))], [(err, 2)]),
        ("a NAK keeps the last answer for the resend", [infer, bytes(bad_crc), encode_frame(Msg.INFER, 1, x[::-1])],
         [(Msg.INFER_RESULT, ok), nak, (Msg.INFER_RESULT, ok)]),
    ]


@pytest.mark.parametrize("name, firmware_buffers", [("mlp", False), ("dense_autoencoder", True)])
def test_c_and_python_servers_answer_the_same_byte_streams_alike(protocol_library, server_models, name,
                                                                 firmware_buffers):
    data, arena = server_models[name]
    (c, _), (py, _) = _servers(protocol_library, data, arena, firmware_buffers)
    in_bytes, out_bytes = c.board.model.input_bytes, c.board.model.output_bytes
    for case, chunks, expected in _streams(in_bytes, out_bytes):
        (c, c_sent), (py, py_sent) = _servers(protocol_library, data, arena, firmware_buffers)
        for chunk in chunks:
            c.feed(chunk)
            py.feed(chunk)
        c_frames, py_frames = _normalised(c_sent), _normalised(py_sent)
        assert c_frames == py_frames, case
        got = [(t, p[0] if t == Msg.ERROR else None) for t, _, p in c_frames]
        assert got == expected, case
        assert all(seq == 0 and p == b"" for t, seq, p in c_frames if t == Msg.NAK), case
        if case.startswith("a NAK keeps"):
            assert c_frames[0] == c_frames[2], case  # the cached answer, not a run on the reversed input
        if case.startswith("bench") and expected[0][0] == Msg.ERROR and expected[0][1] == 4:
            assert b"BENCH takes 1 to 1000 runs" in c_frames[0][2], case
    c.announce()
    py.announce()
    assert _normalised(c_sent)[-1] == _normalised(py_sent)[-1]


# ---- recovery costs round trips: NAK, resend on a damaged answer, timeouts from measured round trips -----


def test_the_c_module_naks_a_damaged_request_and_keeps_its_last_answer(device):
    link, _ = device
    link.wait_hello(5)
    first = link.infer(bytes(range(16)))
    damaged = bytearray(encode_frame(Msg.INFER, 77, bytes(16)))
    damaged[6] ^= 0x04
    link.port.write(bytes(damaged))
    nak = next(f for f in link._frames(time.monotonic() + 5) if f.type != Msg.HELLO)
    assert (nak.type, nak.seq, nak.payload) == (Msg.NAK, 0, b"")
    seq = link._seq
    link.port.write(encode_frame(Msg.INFER, seq, bytes(16)))  # the resend a NAK asks for
    again = next(f for f in link._frames(time.monotonic() + 5) if f.seq == seq)
    assert again.payload[9:] == first.output


class _Flaky:
    """Answers like ``_ok`` but spoils the first copy of every request the way ``spoil`` says."""

    def __init__(self, spoil: str, times: int = 1000):
        self.spoil, self.seen, self.times = spoil, set(), times

    def __call__(self, req: Frame) -> bytes | None:
        first = (req.type, req.seq) not in self.seen
        self.seen.add((req.type, req.seq))
        answer = _ok(req)
        if not first or req.type == Msg.HELLO_REQ or self.times == 0:
            return answer
        self.times -= 1
        if self.spoil == "nak":
            return encode_frame(Msg.NAK, 0)
        if self.spoil == "damaged answer":
            bad = bytearray(answer)
            bad[len(bad) // 2] ^= 0x20
            return bytes(bad)
        return None  # "lost answer"


def _flaky_link(dev: ScriptedDevice, timeout_s: float) -> tuple[Link, serial.Serial]:
    port = serial.Serial(dev.path, 115200, timeout=0.05)
    link = Link(port, timeout_s=timeout_s, retries=2, bytes_per_s=1e6)
    link.wait_hello(5)
    return link, port


@pytest.mark.parametrize("spoil", ["nak", "damaged answer"])
def test_a_nak_or_a_damaged_answer_is_resent_at_once_not_after_a_timeout(spoil):
    # A timeout this long would show as a counted timeout; the resend must come from the NAK or the damage.
    flaky = _Flaky(spoil)
    with ScriptedDevice(flaky) as dev:
        link, port = _flaky_link(dev, timeout_s=60)
        try:
            results = [link.infer(bytes(16)) for _ in range(3)]
            bench = link.bench(1, 2)
        finally:
            port.close()
    assert [r.output for r in results] == [bytes(4)] * 3 and bench.latency_us == (100, 100)
    assert link.timeouts == 0 and link.fast_resends == 4 and link.retried == 4
    seqs = [(f.type, f.seq) for f in dev.requests if f.type != Msg.HELLO_REQ]
    assert len(seqs) == 8 and len(set(seqs)) == 4  # each request twice, under the same sequence number


def test_timeouts_follow_the_measured_round_trips_and_a_lost_answer_costs_one():
    flaky = _Flaky("lost answer", times=1)  # only the first INFER of all is lost
    with ScriptedDevice(flaky) as dev:
        link, port = _flaky_link(dev, timeout_s=3)
        try:
            assert link.timeout_for(Msg.INFER) == 3  # nothing measured yet: the caller's bound
            link.infer(bytes(16))  # lost once: one timeout of the full bound, then the cache answers
            assert link.timeouts == 1 and link.timeout_for(Msg.INFER) == 3  # Karn: a resend is no sample
            for _ in range(20):
                link.infer(bytes(16))
            adaptive = link.timeout_for(Msg.INFER)
            assert link.min_timeout_s <= adaptive < 3
            assert link.timeout_for(Msg.INFER, ceiling_s=0.05) == 0.05  # never above the caller's bound
        finally:
            port.close()
    assert link.timeouts == 1 and link.fast_resends == 0


def test_a_device_that_only_naks_ends_in_a_bounded_timeout():
    with ScriptedDevice(lambda req: _ok(req) if req.type == Msg.HELLO_REQ else encode_frame(Msg.NAK, 0)) as dev:
        link, port = _flaky_link(dev, timeout_s=0.3)
        try:
            with pytest.raises(DeviceTimeout, match="after 3 tries"):
                link.infer(bytes(16))
        finally:
            port.close()
    assert link.fast_resends == link.max_fast_resends and link.timeouts == link.retries
    assert len([f for f in dev.requests if f.type == Msg.INFER]) == 1 + link.max_fast_resends + link.retries


def test_the_c_header_and_python_agree_on_the_version_and_limits():
    header = (templates_dir() / "common" / "tinyflow_protocol.h").read_text()
    from tinyflow.protocol import MAX_BENCH_RUNS

    assert f"#define TF_PROTOCOL_VERSION {PROTOCOL_VERSION} " in header
    assert f"#define TF_MAX_BENCH_RUNS {MAX_BENCH_RUNS}u" in header
    assert f"TF_MSG_NAK = 0x{Msg.NAK:02X}," in header


def test_bench_runs_beyond_the_device_buffer_are_refused_with_the_range(device):
    # pty_device's 512-byte response buffer: (512 - 11 - 3 - 4 output bytes) / 8 = 61 runs, outputs included.
    link, _ = device
    link.wait_hello(5)
    assert len(link.bench(0, 61).latency_us) == 61
    with pytest.raises(DeviceError, match=r"BENCH takes 1 to 61 runs on this device \(code 4\); ask for fewer"):
        link.bench(0, 62)
    with pytest.raises(InputError, match="BENCH takes 1 to 1000 runs"):
        link.bench(0, 1001)  # beyond any device: refused before anything is sent


# ---- version 3: HELLO carries the set-up status, TFLM's words about it, and the build's versions ----------


def test_hello_round_trips_its_setup_status_and_versions():
    from tinyflow.protocol import SETUP, parse_hello

    hello = Hello(PROTOCOL_VERSION, 0, 5, "ab" * 32, 240, 4096, 0, "psram", 0, 0, "b", "r", (_IN,), (_OUT,),
                  SETUP.ALLOCATE, "Failed to resize buffer. Requested: 10, available 4, missing: 6", 4102,
                  {"esp_idf": "v5.1.2", "esp_nn": "1.1.0"})
    assert parse_hello(hello.pack()) == hello
    with pytest.raises(ProtocolError, match="more than the payload holds"):
        parse_hello(hello.pack() + b"x")


@pytest.fixture()
def failed_device(device_binary):
    proc = subprocess.Popen([str(device_binary), "8", "fail"], stdout=subprocess.PIPE, text=True)
    path = proc.stdout.readline().strip()
    port = serial.Serial(path, 115200, timeout=0.05)
    yield Link(port, timeout_s=1.0, retries=2, bytes_per_s=1e6)
    port.close()
    proc.kill()
    proc.wait()


def test_the_c_module_sends_the_setup_failure_tflm_logged(failed_device):
    from tinyflow.device.harness import setup_failure
    from tinyflow.protocol import SETUP

    hello = failed_device.wait_hello(5)
    assert hello.setup_status == SETUP.ALLOCATE and hello.arena_used_bytes == 0
    # The C module found TFLM's "missing: 288" and the log kept its first 95 bytes: the cause, not the rest.
    assert hello.arena_needed_bytes == 4096 + 288
    assert hello.setup_message.startswith("Failed to resize buffer. Requested: 6768, available 6480, missing: 288\n")
    assert len(hello.setup_message) == 95 and hello.setup_message.endswith("\nFailed starting model al")
    assert hello.versions == {"esp_idf": "v5.1.2", "esp_tflite_micro": "1.3.2"}
    line = setup_failure(hello)
    assert "\n" not in line and "arena is 4,096 B but TFLM needs at least 4,384 B (it was 288 B short" in line
    assert "tinyflow generate" in line


def test_the_c_module_reports_a_ready_setup_and_its_versions(device):
    from tinyflow.protocol import SETUP

    link, _ = device
    hello = link.wait_hello(5)
    assert (hello.setup_status, hello.setup_message, hello.arena_needed_bytes) == (SETUP.READY, "", 3000)
    assert hello.versions["esp_idf"] == "v5.1.2"


def test_the_c_and_python_servers_answer_alike_for_a_board_whose_setup_failed(protocol_library, server_models):
    from tinyflow.protocol import SETUP, parse_hello

    data, arena = server_models["mlp"]
    (c, c_sent), (py, py_sent) = _servers(protocol_library, data, arena // 2, False)
    x = bytes(c.board.model.input_bytes)
    for chunk in (encode_frame(Msg.HELLO_REQ, 1), encode_frame(Msg.INFER, 2, x), _bench(3, 2)):
        c.feed(chunk)
        py.feed(chunk)
    c_frames = _normalised(c_sent)
    assert c_frames == _normalised(py_sent)
    assert [(t, p[0] if t == Msg.ERROR else None) for t, _, p in c_frames] == [(Msg.HELLO, None), (Msg.ERROR, 3),
                                                                               (Msg.ERROR, 3)]
    hello = parse_hello(c_frames[0][2])
    assert hello.setup_status == SETUP.ALLOCATE and "Failed to" in hello.setup_message
    assert hello.arena_needed_bytes > arena // 2


# ---- TENSOR_READ: one op output of the last inference, in bounded chunks ------------------------------------


def test_the_c_module_reads_a_tensor_in_chunks_within_its_response_buffer(device):
    link, _ = device
    link.wait_hello(5)
    data = bytes(range(3, 19))
    link.infer(data)
    t = link.tensor(0, 0)
    assert (t.dtype, t.total, t.data) == ("int8", 16, data)
    big = bytes((i * 7) % 256 for i in range(700))
    assert link.tensor(0, 1, chunk=100).data == big  # 7 requests of 100 bytes
    before = link._seq
    assert link.tensor(0, 1).data == big  # 4096 asked, the 512-byte response buffer sends at most 491 at a time
    assert link._seq - before == 2
    with pytest.raises(DeviceError, match="no such op output \\(code 6\\)"):
        link.tensor(2, 0)
