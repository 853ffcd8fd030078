"""`measure --per-layer`: every op's output on the (simulated) board against the host TFLM's. A clean board
shows no divergence; a board with a fault in op K (`simulate --fault-op K`) is caught at op K."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tinyflow.cli import main
from tinyflow.device.simulator import SimProcess
from tinyflow.graph.reader import read_graph


@pytest.fixture(scope="module")
def model(corpus_model, tmp_path_factory):
    data = corpus_model("cnn_pool")
    path = tmp_path_factory.mktemp("layers") / "cnn_pool.tflite"
    path.write_bytes(data)
    return path, read_graph(data)


def _per_layer(capsys, path, port, *extra: str) -> dict:
    assert main(["measure", str(path), "--port", port, "--board", "sim", "--runs", "2", "--per-layer",
                 "--json", *extra]) == 0
    return json.loads(capsys.readouterr().out)["per_layer"]


def test_a_clean_board_has_no_divergent_op(model, capsys):
    path, graph = model
    with SimProcess(path) as sim:
        layers = _per_layer(capsys, path, sim.port)
    assert layers["first_divergent_op"] is None and layers["inputs"] == 3
    assert [d["op"] for d in layers["ops"]] == [op.name for op in graph.main.operators]
    assert all(d["max_lsb_diff"] == 0 and d["equal_share"] == 1.0 and d["elements"] > 0 for d in layers["ops"])


@pytest.mark.parametrize("python_server", [False, True])
def test_a_fault_in_op_k_is_named_as_the_first_divergent_op(model, capsys, python_server):
    path, graph = model
    k = 2
    with SimProcess(path, fault_op=k, python_server=python_server) as sim:
        layers = _per_layer(capsys, path, sim.port)
    assert layers["first_divergent_op"] == {"index": k, "op": graph.main.operators[k].name}
    ops = layers["ops"]
    assert all(d["max_lsb_diff"] == 0 for d in ops[:k])
    assert all(d["max_lsb_diff"] >= 1 and d["equal_share"] < 1.0 for d in ops[k:])


def test_the_table_names_the_first_divergent_op(model, capsys):
    path, graph = model
    proc = subprocess.Popen([sys.executable, "-m", "tinyflow", "simulate", str(path), "--fault-op", "4"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        port = proc.stdout.readline().strip()
        assert main(["measure", str(path), "--port", port, "--board", "sim", "--runs", "2", "--per-layer",
                     "--per-layer-inputs", "1"]) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    out = capsys.readouterr().out
    assert f"first divergent op: #4 {graph.main.operators[4].name}" in out
    assert "1 input" in out and "1 inputs" not in out


def test_per_layer_takes_its_inputs_from_x_test(model, capsys, tmp_path):
    import numpy as np

    path, graph = model
    rng = np.random.default_rng(1)
    npz = tmp_path / "data.npz"
    np.savez(npz, x_train=rng.normal(size=(4, 28, 28, 1)).astype("float32"), y_train=rng.integers(0, 10, 4),
             x_test=rng.normal(size=(5, 28, 28, 1)).astype("float32"), y_test=rng.integers(0, 10, 5))
    with SimProcess(path, fault_op=0) as sim:
        layers = _per_layer(capsys, path, sim.port, "--data", str(npz), "--per-layer-inputs", "2")
    assert (layers["inputs"], layers["source"]) == (2, "x_test")
    assert layers["first_divergent_op"] == {"index": 0, "op": graph.main.operators[0].name}


@pytest.mark.parametrize("name", ["mlp", "cnn_pool", "ds_cnn", "two_outputs"])
def test_the_keep_tensors_build_gets_an_arena_the_real_preserve_all_interpreter_builds_in(name, corpus_model,
                                                                                          tmp_path):
    """`generate --keep-tensors`: TINYFLOW_KEEP_TENSORS defined, and its estimated arena at least what the
    host TFLM needs in preserve-all-tensors mode (a 64-bit build, larger than the board's 32-bit one)."""
    from tinyflow.boards import find_board
    from tinyflow.firmware import generate
    from tinyflow.graph import read_graph
    from tinyflow.model import smallest_arena
    from tinyflow.plan import assess

    data = corpus_model(name)
    graph = read_graph(data)
    project = generate(graph, data, assess(graph, find_board("esp32s3"), tflite=data), tmp_path / "fw", name,
                       keep_tensors=True)
    config = (project.platformio / "src" / "tinyflow_config.h").read_text()
    assert "#define TINYFLOW_KEEP_TENSORS 1" in config
    arena = int(next(ln for ln in config.splitlines() if "kTinyflowArenaBytes =" in ln).split("=")[1].strip(" ;"))
    needed = smallest_arena(data, name, keep_all_tensors=True)
    assert arena >= needed > smallest_arena(data, name)


def test_generate_keep_tensors_from_the_command_line(corpus_model, tmp_path):
    model = tmp_path / "cnn_pool.tflite"
    model.write_bytes(corpus_model("cnn_pool"))
    out = tmp_path / "fw"
    assert main(["generate", str(model), "--board", "esp32s3", "--out", str(out), "--keep-tensors"]) == 0
    config = (out / "platformio" / "src" / "tinyflow_config.h").read_text()
    assert "#define TINYFLOW_KEEP_TENSORS 1" in config
    assert main(["generate", str(model), "--board", "esp32s3", "--out", str(tmp_path / "plain")]) == 0
    plain = (tmp_path / "plain" / "platformio" / "src" / "tinyflow_config.h").read_text()
    assert "TINYFLOW_KEEP_TENSORS 1" not in plain
