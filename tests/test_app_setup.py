"""The firmware's tinyflow_app.cc, compiled with g++ -Werror and run on the host: its set-up keeps TFLM's log
(stderr, where TFLM's DebugLog writes) in a bounded buffer and its HELLO carries it, with the status, what the
arena needed and the build's versions. TFLM's C++ headers are not in the tflite-micro wheel: tests/c/
tflm_interface stands in for the few declarations the app uses, and fails AllocateTensors() as TFLM does."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from tinyflow.boards import find_board
from tinyflow.firmware.project import generate, self_test_vectors
from tinyflow.graph.reader import read_graph
from tinyflow.plan.assessment import assess
from tinyflow.protocol import (
    SETUP,
    Decoder,
    Frame,
    Msg,
    TensorData,
    encode_frame,
    parse_error,
    parse_hello,
    parse_tensor_data,
)

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=[(0, False), (2, False), (0, True)],
                ids=["no self-test", "self-test", "keep tensors"])
def app(request, corpus_model, tmp_path_factory) -> tuple[Path, int, bool]:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    data = corpus_model("cnn_pool")
    graph = read_graph(data)
    d = tmp_path_factory.mktemp("app")
    # Without vectors model_data.h declares no self-test arrays: the app must compile both ways.
    count, keep = request.param
    vectors = self_test_vectors(data, graph, count, None)
    project = generate(graph, data, assess(graph, find_board("esp32s3")), d / "fw", "cnn_pool", self_test=vectors,
                       keep_tensors=keep)
    src = project.platformio / "src"
    exe = d / "app"
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{src}",
                           f"-I{HERE / 'c' / 'tflm_interface'}",
                           str(HERE / "c" / "host_app_main.cc"), str(src / "tinyflow_app.cc"),
                           str(src / "tinyflow_protocol.cc"), str(src / "model_data.cc"), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    arena = int(next(line for line in (src / "tinyflow_config.h").read_text().splitlines()
                     if "kTinyflowArenaBytes =" in line).split("=")[1].strip(" ;"))
    return exe, arena, keep


def _boot(exe: Path, needs: int, requests: bytes = b"") -> tuple[int, list, str, list[Frame]]:
    proc = subprocess.run([str(exe)], capture_output=True, env={**os.environ, "TINYFLOW_TEST_NEEDS": str(needs)},
                          input=requests, timeout=60)
    frames = [x for x in Decoder().feed(proc.stdout) if isinstance(x, Frame)]
    hellos = [parse_hello(x.payload) for x in frames if x.type == Msg.HELLO]
    return proc.returncode, hellos, proc.stderr.decode(), [f for f in frames if f.type != Msg.HELLO]


def test_a_failed_allocation_reaches_hello_in_tflms_words(app):
    exe, arena, _ = app
    code, hellos, stderr, _ = _boot(exe, arena + 300)
    assert code == 4 and len(hellos) == 1
    hello = hellos[0]
    assert hello.setup_status == SETUP.ALLOCATE and hello.arena_bytes == arena and hello.arena_used_bytes == 0
    assert hello.setup_message.startswith("Failed to resize buffer. Requested: 1000, available 700, missing: 300\n")
    assert hello.arena_needed_bytes == arena + 300
    # The serial monitor still shows TFLM's lines, and stderr is restored after set-up.
    assert "missing: 300" in stderr and "after set-up: stderr is the process's own again" in stderr
    # The versions the generated project pins (tinyflow_config.h), as plan.build_versions gives them.
    assert hello.versions == {"esp_idf": "host-test", "arduino_core": "none", "esp_tflite_micro": "1.4.0",
                              "esp_nn": "1.2.3"}


def test_a_ready_setup_says_so_with_the_arena_used(app):
    exe, arena, _ = app
    code, hellos, _, _ = _boot(exe, arena - 100)
    assert code == 0 and len(hellos) == 1
    h = hellos[0]
    assert (h.setup_status, h.setup_message, h.arena_used_bytes, h.arena_needed_bytes) == (SETUP.READY, "",
                                                                                           arena - 100, arena - 100)


def test_tensor_read_needs_the_keep_tensors_build(app):
    exe, arena, keep = app
    requests = b"".join(encode_frame(Msg.TENSOR_READ, seq, struct.pack("<HBIH", op, 0, 0, 100))
                        for seq, op in ((1, 1), (2, 3)))
    code, _, _, answers = _boot(exe, arena - 100, requests)
    assert code == 0 and len(answers) == 2
    if keep:  # the stand-in's op 1 writes tensor 5: 6 bytes of 6
        assert answers[0].type == Msg.TENSOR_DATA
        assert parse_tensor_data(answers[0].payload) == TensorData("int8", 6, 0, bytes([6] * 6))
        assert answers[1].type == Msg.ERROR
        assert parse_error(answers[1].payload) == (6, "the model has no such op output")
    else:
        assert [parse_error(a.payload) for a in answers] == [(6, "this firmware keeps no intermediate tensors")] * 2
