"""The harness against the simulated board over real ptys, clean and through a fault-injecting proxy."""

from __future__ import annotations

import json
import os
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.fault_proxy import FaultProxy, Faults, ScriptedDevice
from tinyflow.boards import find_board
from tinyflow.cli import main
from tinyflow.device.flashing import wait_for_hello
from tinyflow.device.harness import measure
from tinyflow.device.link import Link
from tinyflow.device.ports import open_port
from tinyflow.device.simulator import SimProcess, _tensor_info
from tinyflow.errors import DeviceError
from tinyflow.graph.reader import read_graph
from tinyflow.model.dataset import load_dataset
from tinyflow.protocol import FLAGS, PROTOCOL_VERSION, Hello, Msg, encode_frame

SAMPLES = 30


@pytest.fixture(scope="module")
def model(corpus_model, tmp_path_factory):
    data = corpus_model("cnn_pool")
    d = tmp_path_factory.mktemp("harness")
    path = d / "cnn_pool.tflite"
    path.write_bytes(data)
    rng = np.random.default_rng(0)
    npz = d / "data.npz"
    np.savez(npz, x_train=rng.normal(size=(8, 28, 28, 1)).astype("float32"), y_train=rng.integers(0, 10, 8),
             x_test=rng.normal(size=(SAMPLES, 28, 28, 1)).astype("float32"), y_test=rng.integers(0, 10, SAMPLES))
    return path, data, read_graph(data), load_dataset(npz), npz


def _measure(port_path, model, timeout_s=0.5, **kw):
    _, data, graph, ds, _ = model
    port = open_port(port_path, find_board("sim"))
    try:
        link = Link(port, timeout_s=timeout_s, retries=4, bytes_per_s=1e6)
        link.wait_hello(10)
        return measure(link, graph, data, ds, runs=10, warmup=2, **kw)
    finally:
        port.close()


@pytest.fixture(scope="module")
def clean(model):
    with SimProcess(model[0]) as sim:
        return _measure(sim.port, model)


def _same_results(a, b):
    assert (a.samples, a.accuracy, a.bit_exact_share, a.max_lsb_diff) == (b.samples, b.accuracy,
                                                                         b.bit_exact_share, b.max_lsb_diff)


def test_a_clean_run_on_the_simulated_board(clean):
    assert clean.kind == "simulated" and clean.hello.simulated
    assert "simulated" in clean.label and "host" in clean.label
    assert clean.samples == SAMPLES and clean.bit_exact_share == 1.0 and clean.max_lsb_diff == 0
    assert clean.latency_us.min > 0 and clean.latency_us.min <= clean.latency_us.median <= clean.latency_us.max
    assert clean.runs == 10 and clean.cycles is None
    assert clean.profile is None and "no per-op profiler" in clean.profile_note
    assert clean.resets == 0 and clean.retries == 0
    j = clean.to_json()
    assert j["kind"] == "simulated" and set(j["latency_us"]) >= {"min", "median", "p90", "max"}


def test_the_python_server_gives_the_same_answers(model, clean):
    with SimProcess(model[0], python_server=True) as sim:
        _same_results(_measure(sim.port, model), clean)


@pytest.mark.parametrize("faults, counter", [
    (Faults(garbage_every=3, seed=1), "garbage"),
    (Faults(drop_request_bytes=3, seed=2), "drop-request"),
    (Faults(drop_response_bytes=3, seed=13), "drop-response"),
    (Faults(flip_response_bits=3, seed=4), "flip"),
    (Faults(delay_once_s=0.9, seed=5), "delay"),
])
def test_faults_on_the_line_do_not_change_the_results(model, clean, faults, counter):
    with SimProcess(model[0]) as sim, FaultProxy(sim.port, faults) as proxy:
        m = _measure(proxy.path, model)
    assert faults.counts.get(counter, 0) > 0, "the fault never happened"
    _same_results(m, clean)
    if counter != "garbage":
        assert m.retries > 0  # the harness noticed and asked again; the device answered from its cache


def test_a_board_reset_mid_run_is_resynchronised_without_losing_or_double_counting(model, clean):
    with SimProcess(model[0]) as sim:
        faults = Faults(reset_after_chunks=12)
        with FaultProxy(sim.port, faults, reset=sim.reset) as proxy:
            m = _measure(proxy.path, model)
    assert faults.counts.get("reset") == 1 and m.resets >= 1
    _same_results(m, clean)


def test_a_dead_link_is_a_clear_error_not_a_hang(model):
    start = time.monotonic()
    with SimProcess(model[0]) as sim, FaultProxy(sim.port, Faults(dead_after_chunks=8)) as proxy, \
            pytest.raises(DeviceError, match="link is gone"):
        _measure(proxy.path, model, timeout_s=0.3)
    assert time.monotonic() - start < 30


def test_a_stale_firmware_is_refused(model, corpus_model, tmp_path):
    other = tmp_path / "mlp.tflite"
    other.write_bytes(corpus_model("mlp"))
    with SimProcess(other) as sim, pytest.raises(DeviceError, match="another model"):
        _measure(sim.port, model)


def test_measure_command_through_the_faulty_line_matches_a_clean_run(model, capsys):
    path, _, _, _, npz = model
    args = ["measure", str(path), "--data", str(npz), "--runs", "5", "--json", "--timeout", "0.5"]
    assert main(args) == 0
    clean = json.loads(capsys.readouterr().out)
    with SimProcess(path) as sim, FaultProxy(sim.port, Faults(garbage_every=2, flip_response_bits=2,
                                                               drop_request_bytes=2, seed=9)) as proxy:
        assert main([*args, "--port", proxy.path, "--board", "sim"]) == 0
    faulty = json.loads(capsys.readouterr().out)
    for key in ("samples", "accuracy", "bit_exact_share", "max_lsb_diff", "kind"):
        assert faulty[key] == clean[key]
    assert clean["kind"] == "simulated"


def test_simulate_command_serves_the_model(model):
    path = model[0]
    proc = subprocess.Popen([sys.executable, "-m", "tinyflow", "simulate", str(path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        port_path = proc.stdout.readline().strip()
        port = open_port(port_path, find_board("sim"))
        hello = Link(port, bytes_per_s=1e6).wait_hello(10)
        port.close()
        assert hello.simulated and hello.model_sha256 == model[2].sha256 and hello.board_id == "sim"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _scripted_answers(graph, version=PROTOCOL_VERSION, infer_extra=0, bench_runs=None, infer_status=0):
    """A fake board for ``graph`` that answers like the firmware except where a case says otherwise."""
    hello = Hello(version, FLAGS.SIMULATED, 9, graph.sha256, 0, 1, 1, "host", 0, 0, "sim", "fake",
                  tuple(_tensor_info(t) for t in graph.input_tensors()),
                  tuple(_tensor_info(t) for t in graph.output_tensors())).pack()
    out_bytes = sum(t.bytes for t in graph.output_tensors())

    def answer(req):
        if req.type == Msg.HELLO_REQ:
            return encode_frame(Msg.HELLO, req.seq, hello)
        if req.type == Msg.INFER:
            return encode_frame(Msg.INFER_RESULT, req.seq, struct.pack("<BII", infer_status, 10, 0)
                                + bytes(out_bytes + infer_extra))
        if req.type == Msg.BENCH:
            runs = struct.unpack("<HH", req.payload)[1] if bench_runs is None else bench_runs
            return encode_frame(Msg.BENCH_RESULT, req.seq, struct.pack(f"<BH{2 * runs}I", 0, runs, *([10] * runs),
                                                                        *([0] * runs)))
        return encode_frame(Msg.ERROR, req.seq, b"\x05\x22this device has no per-op profiler")
    return answer


@pytest.mark.parametrize("case, message", [
    ({"version": 99}, f"the device speaks tinyflow protocol version 99, this tinyflow speaks {PROTOCOL_VERSION}"),
    ({"infer_extra": -3}, "where its HELLO promised 10"),
    ({"infer_status": 1}, "INFER with status 1"),
    ({"bench_runs": 0}, "BENCH with 0 runs where 5 were asked"),
])
def test_measure_against_a_device_with_unexpected_answers_is_one_line(model, capsys, case, message):
    path, _, graph, _, npz = model
    with ScriptedDevice(_scripted_answers(graph, **case)) as dev:
        code = main(["measure", str(path), "--data", str(npz), "--runs", "5", "--timeout", "0.5", "--port", dev.path,
                     "--board", "sim"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == DeviceError.exit_code
    assert err[-1].startswith("tinyflow: error: ") and message in err[-1]
    assert "re-generate and flash the firmware with this tinyflow" in err[-1]
    assert not any("Traceback" in line for line in err)


def test_flashing_reports_a_firmware_of_another_version(model):
    _, _, graph, _, _ = model
    with ScriptedDevice(_scripted_answers(graph, version=4)) as dev, \
            pytest.raises(DeviceError, match="protocol version 4, this tinyflow speaks"):
        wait_for_hello(dev.path, find_board("sim"), timeout_s=5)


def _gone(pid: int) -> bool:
    """Not running: no such process, or a zombie nobody has reaped yet (it runs nothing)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        return False


def _wait_gone(pid: int, bound_s: float = 30.0) -> bool:
    deadline = time.monotonic() + bound_s
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return _gone(pid)


def test_the_simulated_board_dies_when_its_parent_is_killed(model):
    script = ("import sys, time\nfrom tinyflow.device.simulator import SimProcess\n"
              "with SimProcess(sys.argv[1]) as sim:\n    print(sim.proc.pid, flush=True)\n    time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", script, str(model[0])], stdout=subprocess.PIPE, text=True)
    try:
        sim_pid = int(parent.stdout.readline())
        assert not _gone(sim_pid)
        parent.send_signal(signal.SIGKILL)  # no __exit__, no atexit: only the child's own watch can end it
        parent.wait(timeout=10)
        assert _wait_gone(sim_pid), "the simulated board outlived its SIGKILLed parent"
    finally:
        if parent.poll() is None:
            parent.kill()


def test_the_simulated_board_stops_when_its_stdin_closes(model):
    # The portable path (no prctl): the parent's end of the child's stdin closes when the parent dies.
    sim = SimProcess(model[0]).__enter__()
    try:
        sim.proc.stdin.close()
        assert _wait_gone(sim.proc.pid) and sim.proc.wait(timeout=10) == 0
    finally:
        sim.__exit__(None, None, None)


def test_a_firmware_built_with_other_versions_than_the_plan_warns():
    from tinyflow.boards import find_board
    from tinyflow.device.harness import version_warnings
    from tinyflow.plan import build_versions

    planned = build_versions(find_board("esp32s3"))
    assert planned["esp-nn"] == "1.2.3" and planned["esp-tflite-micro"] == "1.4.0"
    same = {"esp_idf": "v5.4.1", "arduino_core": "none", "esp_tflite_micro": "1.4.0", "esp_nn": "1.2.3"}
    assert version_warnings(planned, same) == ()
    newer = version_warnings(planned, {**same, "esp_nn": "1.2.4"})
    assert len(newer) == 1 and "esp-nn 1.2.4" in newer[0] and "esp-nn 1.2.3" in newer[0]
    assert "--kernel-library-version" in newer[0]
    # A firmware that does not know (older firmware, the simulated board) is not a mismatch.
    assert version_warnings(planned, {**same, "esp_nn": "unknown", "esp_tflite_micro": "host"}) == ()
    assert version_warnings(build_versions(find_board("sim")), same) == ()
