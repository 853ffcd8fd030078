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
from tinyflow.errors import DeviceError
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
    assert hello.version == 1 and hello.boot_id == 7 and hello.board_id == "pty-test"
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
    with ScriptedDevice(_answer(Msg.HELLO_REQ, _hello(3)), boot=encode_frame(Msg.HELLO, 0, _hello(3))) as dev:
        port = serial.Serial(dev.path, 115200, timeout=0.05)
        try:
            with pytest.raises(DeviceError, match="protocol version 3, this tinyflow speaks"):
                Link(port, timeout_s=0.5, bytes_per_s=1e6).wait_hello(5)
        finally:
            port.close()
