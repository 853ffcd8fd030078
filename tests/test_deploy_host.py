"""load -> optimize -> convert -> host evaluation on real models, real TF-MOT and the real TFLM interpreter."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tinyflow.cli import main
from tinyflow.graph.reader import constant_array, read_graph_file
from tinyflow.model.optimization import OptimizeOptions
from tinyflow.pipeline import DeployOptions, deploy


@pytest.fixture(scope="module")
def digits_ptq(digits_example, tmp_path_factory):
    model, data = digits_example
    out = tmp_path_factory.mktemp("ptq") / "out"
    return deploy(model, DeployOptions(board="esp32s3", data=str(data), out=str(out)))


def test_digits_int8_accuracy_is_within_1_5_points_of_float(digits_ptq):
    acc = digits_ptq.report["accuracy"]
    assert acc["task"] == "classification" and acc["samples"] > 500
    assert acc["float"] > 0.95
    assert abs(acc["float"] - acc["int8"]) <= 0.015
    assert acc["agreement"] >= 0.98
    assert "tflite-micro" in acc["int8_runtime"]


def test_deploy_writes_the_tflite_and_a_report_with_the_required_keys(digits_ptq):
    out = digits_ptq.out_dir
    report = json.loads((out / "report.json").read_text())
    for dotted in ("board.id", "model.tflite_bytes", "model.ops", "optimize.sparsity", "optimize.quantization",
                   "accuracy.float", "accuracy.int8", "accuracy.agreement"):
        node = report
        for key in dotted.split("."):
            assert key in node, dotted
            node = node[key]
    assert report["board"]["id"] == "esp32s3-devkitc-1-n8r8"
    tflite = (out / "model_int8.tflite").read_bytes()
    assert report["model"]["tflite_bytes"] == len(tflite)
    graph = read_graph_file(out / "model_int8.tflite")
    assert graph.is_quantized
    assert [t.dtype for t in graph.input_tensors()] == ["INT8"]
    assert [t.dtype for t in graph.output_tensors()] == ["INT8"]
    assert report["model"]["ops"] == list(graph.op_names)
    assert report["model"]["format"] == "keras3"  # the example is a Keras 3 .keras file, bridged


def _kernel_zero_share(model) -> float:
    zeros = total = 0
    for layer in model.layers:
        for w in layer.weights:
            if "kernel" in w.name:
                k = w.numpy()
                zeros, total = zeros + int(np.sum(k == 0)), total + k.size
    return zeros / total


@pytest.mark.slow
def test_pruning_to_half_keeps_int8_accuracy_within_3_points(digits_example, tmp_path):
    model, data = digits_example
    result = deploy(model, DeployOptions(data=str(data), out=str(tmp_path / "p"),
                                         optimize=OptimizeOptions(prune=0.5)))
    assert _kernel_zero_share(result.model.optimized.float_model) >= 0.5
    acc, opt = result.report["accuracy"], result.report["optimize"]
    assert opt["sparsity"]["overall"] >= 0.5 and opt["method"] == "prune+ptq"
    assert all(v >= 0.49 for v in opt["sparsity"]["per_layer"].values())
    assert abs(acc["float"] - acc["int8"]) <= 0.03
    # The float baseline is the model as given, not the pruned copy.
    assert _kernel_zero_share(result.model.loaded.keras_model) < 0.01


@pytest.mark.slow
def test_structured_2_4_zeroes_two_of_every_four(digits_example, tmp_path):
    model, data = digits_example
    result = deploy(model, DeployOptions(data=str(data), out=str(tmp_path / "s"),
                                         optimize=OptimizeOptions(structured_2_4=True, epochs=2)))
    # By type, not by name: Keras numbers layer names per process, so "dense_1" depends on test order.
    dense = [layer for layer in result.model.optimized.float_model.layers if type(layer).__name__ == "Dense"]
    assert dense
    for layer in dense:
        k = layer.kernel.numpy()  # (inputs, units): blocks of 4 run along the inputs
        blocks = (k.T.reshape(k.shape[1], -1, 4) == 0).sum(axis=-1)
        assert np.all(blocks >= 2)
    assert result.report["optimize"]["sparsity"]["structured_2_4"] is True


@pytest.mark.slow
@pytest.mark.parametrize("fixture", ["keras3_residual", "tf_keras_residual_h5"])
def test_models_with_a_residual_add_deploy_with_qat(fixture, request, digits_example, tmp_path):
    model = request.getfixturevalue(fixture)
    code = main(["deploy", str(model), "--board", "esp32s3", "--data", str(digits_example[1]), "--qat", "--epochs", "2",
                 "--out", str(tmp_path / "q")])
    assert code == 0
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["optimize"]["method"] == "qat"
    assert "ADD" in report["model"]["ops"]
    assert report["model"]["format"] == ("keras3" if fixture == "keras3_residual" else "tf_keras")
    assert report["accuracy"]["int8"] >= report["accuracy"]["float"] - 0.05


@pytest.mark.slow
def test_pruning_preserving_qat_keeps_the_zeros_in_the_int8_weights(keras3_residual, digits_example, tmp_path):
    result = deploy(keras3_residual, DeployOptions(data=str(digits_example[1]), out=str(tmp_path / "pq"),
                                                   optimize=OptimizeOptions(prune=0.5, qat=True, epochs=2)))
    assert result.report["optimize"]["method"] == "pqat"
    assert result.report["optimize"]["sparsity"]["overall"] >= 0.49
    graph, tflite = result.model.graph, result.model.tflite
    # The weights of the conv and dense ops in the int8 flatbuffer are still at least half zeros.
    zeros = total = 0
    for op in graph.main.operators:
        if op.name in ("CONV_2D", "FULLY_CONNECTED", "DEPTHWISE_CONV_2D"):
            w = constant_array(tflite, graph.main.tensors[op.inputs[1]])
            zeros, total = zeros + int(np.sum(w == 0)), total + w.size
    assert total and zeros / total >= 0.49
    assert result.report["accuracy"]["int8"] is not None


def test_a_tflite_input_skips_optimize_and_convert(digits_ptq, digits_example, tmp_path):
    _, data = digits_example
    result = deploy(digits_ptq.tflite_path, DeployOptions(data=str(data), out=str(tmp_path / "t")))
    assert result.model.optimized is None
    assert result.report["optimize"]["method"].startswith("none")
    assert result.report["accuracy"]["int8"] == digits_ptq.report["accuracy"]["int8"]
    assert result.report["accuracy"]["float"] is None  # no Keras model to compare with


def test_deploy_without_a_board_measures_on_the_simulated_board(digits_ptq):
    device = digits_ptq.report["device"]
    assert device["kind"] == "simulated" and "simulated" in device["label"]
    assert device["bit_exact_share"] == 1.0 and device["max_lsb_diff"] == 0
    assert device["samples"] == digits_ptq.report["accuracy"]["samples"]
    assert device["accuracy"] == digits_ptq.report["accuracy"]["int8"]
    lat = device["latency_us"]
    assert 0 < lat["min"] <= lat["median"] <= lat["p90"] <= lat["max"]
    assert device["profile"] is None and device["profile_note"]


def test_deploy_generates_the_firmware_projects(digits_ptq):
    fw = digits_ptq.report["firmware"]
    assert (digits_ptq.out_dir / fw["platformio"] / "platformio.ini").is_file()
    sketch = digits_ptq.out_dir / fw["arduino"]
    assert (sketch / f"{sketch.name}.ino").is_file()
    config = (digits_ptq.out_dir / fw["platformio"] / "src" / "tinyflow_config.h").read_text()
    assert f"kTinyflowArenaBytes = {digits_ptq.report['memory']['arena']['firmware_bytes']};" in config
    assert "kTinyflowSelfTestCount = 4;" in (digits_ptq.out_dir / fw["platformio"] / "src" / "model_data.h").read_text()
    assert 'kTinyflowLabels[] = {' in config  # the digits example ships its class names
