"""The firmware's tinyflow_app.cc, compiled with g++ -Werror and run on the host: its set-up keeps TFLM's log
(stderr, where TFLM's DebugLog writes) in a bounded buffer and its HELLO carries it, with the status, what the
arena needed and the build's versions. TFLM's C++ headers are not in the tflite-micro wheel: tests/c/
tflm_interface stands in for the few declarations the app uses, and fails AllocateTensors() as TFLM does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tinyflow.boards import find_board
from tinyflow.firmware.project import generate, self_test_vectors
from tinyflow.graph.reader import read_graph
from tinyflow.plan.assessment import assess
from tinyflow.protocol import SETUP, Decoder, Frame, Msg, parse_hello

HERE = Path(__file__).parent


@pytest.fixture(scope="module", params=[0, 2], ids=["no self-test", "self-test"])
def app(request, corpus_model, tmp_path_factory) -> tuple[Path, int]:
    if shutil.which("g++") is None:
        pytest.skip("g++ is not installed")
    data = corpus_model("cnn_pool")
    graph = read_graph(data)
    d = tmp_path_factory.mktemp("app")
    # Without vectors model_data.h declares no self-test arrays: the app must compile both ways.
    vectors = self_test_vectors(data, graph, request.param, None)
    project = generate(graph, data, assess(graph, find_board("esp32s3")), d / "fw", "cnn_pool", self_test=vectors)
    src = project.platformio / "src"
    exe = d / "app"
    proc = subprocess.run(["g++", "-std=c++17", "-Wall", "-Wextra", "-Werror", f"-I{src}",
                           f"-I{HERE / 'c' / 'tflm_interface'}", "-DTINYFLOW_BUILD_ESP_NN=\"1.1.2\"",
                           str(HERE / "c" / "host_app_main.cc"), str(src / "tinyflow_app.cc"),
                           str(src / "tinyflow_protocol.cc"), str(src / "model_data.cc"), "-o", str(exe)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    arena = int(next(line for line in (src / "tinyflow_config.h").read_text().splitlines()
                     if "kTinyflowArenaBytes =" in line).split("=")[1].strip(" ;"))
    return exe, arena


def _boot(exe: Path, needs: int) -> tuple[int, list, str]:
    proc = subprocess.run([str(exe)], capture_output=True, env={**os.environ, "TINYFLOW_TEST_NEEDS": str(needs)},
                          timeout=60)
    items = list(Decoder().feed(proc.stdout))
    hellos = [parse_hello(x.payload) for x in items if isinstance(x, Frame) and x.type == Msg.HELLO]
    return proc.returncode, hellos, proc.stderr.decode()


def test_a_failed_allocation_reaches_hello_in_tflms_words(app):
    exe, arena = app
    code, hellos, stderr = _boot(exe, arena + 300)
    assert code == 4 and len(hellos) == 1
    hello = hellos[0]
    assert hello.setup_status == SETUP.ALLOCATE and hello.arena_bytes == arena and hello.arena_used_bytes == 0
    assert hello.setup_message.startswith("Failed to resize buffer. Requested: 1000, available 700, missing: 300\n")
    assert hello.arena_needed_bytes == arena + 300
    # The serial monitor still shows TFLM's lines, and stderr is restored after set-up.
    assert "missing: 300" in stderr and "after set-up: stderr is the process's own again" in stderr
    assert hello.versions == {"esp_idf": "host-test", "arduino_core": "none", "esp_tflite_micro": "unknown",
                              "esp_nn": "1.1.2"}


def test_a_ready_setup_says_so_with_the_arena_used(app):
    exe, arena = app
    code, hellos, _ = _boot(exe, arena - 100)
    assert code == 0 and len(hellos) == 1
    h = hellos[0]
    assert (h.setup_status, h.setup_message, h.arena_used_bytes, h.arena_needed_bytes) == (SETUP.READY, "",
                                                                                           arena - 100, arena - 100)
