"""Stage one for models nobody here designed: direct Keras 3 conversion, the converter in a child, rewrites to
ops TFLM has, recurrent models, the does-not-fit path, test-only data, float models, and what optimize did."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.model_families import task
from tinyflow.cli import main
from tinyflow.errors import InputError
from tinyflow.graph import read_graph, read_graph_file
from tinyflow.model import OptimizeOptions, keras3, tf_keras
from tinyflow.pipeline import DeployOptions, deploy
from tinyflow.progress import RecordingReporter


def _save(model, folder: Path, name: str, shape: tuple[int, ...], epochs: int = 3) -> tuple[Path, Path]:
    data = task(shape, n=480)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(data["x_train"], data["y_train"], epochs=epochs, batch_size=32, verbose=0)
    path = folder / name
    model.save(path)
    np.savez(folder / "data.npz", **data)
    return path, folder / "data.npz"


def test_keras3_ptq_converts_directly_with_a_layer_the_bridge_lacks(tmp_path):
    k = keras3()
    k.utils.set_random_seed(0)
    i = k.Input((16,))
    x = k.layers.Dense(12, activation="relu")(i)
    x = k.layers.UnitNormalization()(x)  # not in tinyflow's tf_keras bridge
    model = k.Model(i, k.layers.Dense(3, activation="softmax")(x))
    path, data = _save(model, tmp_path, "unit.keras", (16,))
    reporter = RecordingReporter()
    result = deploy(path, DeployOptions(board="esp32s3", data=str(data), out=str(tmp_path / "out")), reporter)
    assert result.report["model"]["format"] == "keras3"
    assert not any("rebuilt in tf_keras" in n for n in reporter.notes)
    assert result.report["accuracy"]["agreement"] >= 0.95


def test_upsampling2d_becomes_resize_nearest_neighbor_not_tile(family_model, tmp_path):
    path, data = family_model("upsampling")
    reporter = RecordingReporter()
    result = deploy(path, DeployOptions(board="esp32s3", data=str(data), out=str(tmp_path / "out")), reporter)
    ops = result.report["model"]["ops"]
    assert "RESIZE_NEAREST_NEIGHBOR" in ops and "TILE" not in ops
    assert any("RESIZE_NEAREST_NEIGHBOR" in n for n in reporter.notes)
    acc = result.report["accuracy"]
    assert acc["float"] > 0.8 and abs(acc["int8"] - acc["float"]) <= 0.03


def test_tf_keras_lstm_deploys_int8_and_counts_its_macs(tmp_path):
    k = tf_keras()
    k.utils.set_random_seed(0)
    i = k.Input((16, 4))
    x = k.layers.LSTM(12)(i)
    model = k.Model(i, k.layers.Dense(3, activation="softmax")(x))
    path, data = _save(model, tmp_path, "lstm.h5", (16, 4), epochs=4)
    result = deploy(path, DeployOptions(board="esp32s3", data=str(data), out=str(tmp_path / "out")))
    graph = read_graph_file(result.out_dir / "model_int8.tflite")
    lstm = next(op for op in graph.main.operators if op.name == "UNIDIRECTIONAL_SEQUENCE_LSTM")
    # The op's FLOAT32 intermediates (shape [0], no buffer, never read) do not make the model "float".
    assert any(graph.main.tensors[t].dtype == "FLOAT32" for t in lstm.intermediates)
    assert graph.is_quantized
    # 16 steps x (4 input matrices 12x4 + 4 recurrent matrices 12x12).
    assert lstm.macs == 16 * (4 * 12 * 4 + 4 * 12 * 12)
    acc = result.report["accuracy"]
    assert acc["float"] > 0.6 and acc["int8"] >= acc["float"] - 0.03
    assert result.report["device"]["bit_exact_share"] == 1.0


def test_a_converter_crash_is_one_line_naming_the_layer_type(monkeypatch):
    from tinyflow.model import convert

    # A child that dies the way TF's converter does on a GRU: by a signal, without a word.
    monkeypatch.setattr(convert, "_CHILD", "import os, signal; os.kill(os.getpid(), signal.SIGSEGV)")
    k = tf_keras()
    i = k.Input((8, 3))
    model = k.Model(i, k.layers.Dense(2)(k.layers.GRU(4, unroll=True)(i)))
    with pytest.raises(InputError) as e:
        convert.to_int8_tflite(model, np.zeros((4, 8, 3), np.float32), source="gru.h5")
    msg = str(e.value)
    assert msg.startswith("gru.h5: TF's converter crashed (signal 11)") and "GRU" in msg and "\n" not in msg


def test_does_not_fit_writes_all_three_reports_and_exits_1(tmp_path, capsys):
    k = keras3()
    i = k.Input((96, 96, 3))
    x = k.layers.Conv2D(32, 3, padding="same", activation="relu")(i)
    model = k.Model(i, k.layers.Dense(2, activation="softmax")(k.layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "big.keras")
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "d.npz", x_train=rng.random((16, 96, 96, 3), dtype=np.float32), y_train=rng.integers(0, 2, 16),
             x_test=rng.random((8, 96, 96, 3), dtype=np.float32), y_test=rng.integers(0, 2, 8))
    out = tmp_path / "out"
    code = main(["deploy", str(tmp_path / "big.keras"), "--data", str(tmp_path / "d.npz"), "--board", "esp32s3",
                 "--no-psram", "--out", str(out)])
    assert code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not fit esp32s3" in err[0] and "too many" in err[0]
    report = json.loads((out / "report.json").read_text())
    assert report["memory"]["fits"] is False and report["device"] is None and report["firmware"] is None
    assert report["memory"]["arena"]["peak_tensors"][0]["bytes"] == 96 * 96 * 32
    md = (out / "report.md").read_text()
    assert "Largest tensors live at the peak" in md and "drop --no-psram" in md
    html = (out / "report.html").read_text()
    assert 'id="peak-tensors"' in html and "Nothing was generated" in html
    assert not (out / "firmware").exists()


@pytest.fixture(scope="module")
def small_tflite(family_model, tmp_path_factory):
    """A small int8 .tflite of a trained Conv1D model, and its data."""
    folder = tmp_path_factory.mktemp("small")
    path, data = family_model("conv1d")
    assert main(["convert", str(path), "--data", str(data), "--out", str(folder / "conv")]) == 0
    return folder / "conv" / "model_int8.tflite", data


def test_measure_and_tflite_deploy_take_test_only_data(small_tflite, tmp_path, capsys):
    tflite, data = small_tflite
    with np.load(data) as z:
        np.savez(tmp_path / "test_only.npz", x_test=z["x_test"], y_test=z["y_test"])
    capsys.readouterr()
    assert main(["measure", str(tflite), "--data", str(tmp_path / "test_only.npz"), "--limit", "20", "--runs", "3",
                 "--json"]) == 0
    m = json.loads(capsys.readouterr().out)
    assert m["samples"] == 20 and m["accuracy"] is not None and m["bit_exact_share"] == 1.0
    result = deploy(tflite, DeployOptions(board="esp32s3", data=str(tmp_path / "test_only.npz"),
                                          out=str(tmp_path / "out"), runs=3))
    assert result.report["device"]["samples"] > 0


def test_a_float_tflite_without_data_passes_its_self_test(tmp_path):
    tf = pytest.importorskip("tensorflow")
    k = tf_keras()
    i = k.Input((10,))
    model = k.Model(i, k.layers.Dense(3)(k.layers.Dense(8, activation="relu")(i)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    (tmp_path / "float.tflite").write_bytes(converter.convert())
    assert read_graph_file(tmp_path / "float.tflite").input_tensors()[0].dtype == "FLOAT32"
    # The boot self-test's vectors come from the host TFLM; they used to be random bytes fed as UINT8.
    result = deploy(tmp_path / "float.tflite", DeployOptions(board="esp32s3", out=str(tmp_path / "out"), runs=3))
    assert result.firmware is not None and result.report["device"]["runs"] == 3
    from tinyflow.firmware import self_test_vectors

    tflite = (tmp_path / "float.tflite").read_bytes()
    st = self_test_vectors(tflite, read_graph(tflite), 3, None)
    assert len(st.inputs) == 3 and all(len(x) == 10 * 4 for x in st.inputs)  # float32 inputs
    assert all(len(y) == 3 * 4 for y in st.outputs)
    assert all(np.isfinite(np.frombuffer(x, np.float32)).all() for x in st.inputs)


def test_the_reports_say_what_optimize_did_and_warn_when_sparsity_falls_short(family_model, tmp_path):
    path, data = family_model("conv1d")
    reporter = RecordingReporter()
    result = deploy(path, DeployOptions(board="esp32s3", data=str(data), out=str(tmp_path / "out"),
                                        optimize=OptimizeOptions(structured_2_4=True, epochs=1)), reporter)
    sp = result.report["optimize"]["sparsity"]
    # TF-MOT's 2:4 takes 2-D/4-D kernels: both Conv1D layers stay dense, and the user is told.
    assert {name for name in sp["skipped"] if name.startswith("conv1d")} and "3-D" in next(iter(sp["skipped"].values()))
    assert any("far below the 50% asked" in n for n in reporter.notes)
    html = (result.out_dir / "report.html").read_text()
    assert "<h2>Optimization</h2>" in html and "left dense" in html
    from tinyflow.report import summary_rows

    rows = dict(summary_rows(result.report))
    assert "2:4 structured pruning" in rows["optimization"] and "left dense" in rows["optimization"]


def test_report_html_escapes_a_hostile_model_name(small_tflite, tmp_path):
    tflite, _ = small_tflite
    hostile = tmp_path / "<img src=x onerror=alert(1)>.tflite"
    shutil.copyfile(tflite, hostile)
    result = deploy(hostile, DeployOptions(board="esp32s3", out=str(tmp_path / "out"), runs=3))
    html = (result.out_dir / "report.html").read_text()
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_qat_of_a_keras3_separable_model_with_add_and_concatenate(family_model, tmp_path):
    # TF-MOT splits SeparableConv2D into a new auto-named "conv2d", which collided with the user's own.
    path, data = family_model("separable")
    result = deploy(path, DeployOptions(board="esp32s3", data=str(data), out=str(tmp_path / "out"),
                                        optimize=OptimizeOptions(qat=True, epochs=1)))
    assert result.report["optimize"]["method"] == "qat"
    assert {"ADD", "CONCATENATION"} <= set(result.report["model"]["ops"])
    assert read_graph((result.out_dir / "model_int8.tflite").read_bytes()).is_quantized


def test_a_lambda_layer_is_one_sentence_without_keras_safe_mode_advice(tmp_path, capsys):
    k = keras3()
    i = k.Input((4,))
    model = k.Model(i, k.layers.Dense(2)(k.layers.Lambda(lambda x: x * 2.0)(i)))
    model.save(tmp_path / "lam.keras")
    np.savez(tmp_path / "d.npz", **task((4,), n=40))
    assert main(["deploy", str(tmp_path / "lam.keras"), "--data", str(tmp_path / "d.npz"), "--out",
                 str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Lambda layer" in err and "safe_mode" not in err and "lam.keras" in err


def test_a_function_tf_cannot_save_converts_through_a_frozen_graphdef(family_model, monkeypatch):
    # The converter child's last resort: no family needs it since the SavedModel tracks only the variables,
    # so a refused save stands in for a function TF cannot save. Real freezing, the real converter child.
    from tinyflow.model import load_dataset, load_model, run_model, tensorflow
    from tinyflow.model.convert import to_int8_tflite

    path, data = family_model("conv_transpose")
    model, x = load_model(path).keras_model, load_dataset(data).x_train
    saved = to_int8_tflite(model, x, 50)

    def refuse(*args, **kwargs):
        raise ValueError("this function cannot be saved")

    monkeypatch.setattr(tensorflow().saved_model, "save", refuse)
    frozen = to_int8_tflite(model, x, 50)
    assert read_graph(frozen).op_names == read_graph(saved).op_names
    q = read_graph(saved).input_tensors()[0].quantization
    inputs = np.clip(np.round(x[:40] / q.scale + q.zero_point), -128, 127).astype(np.int8)
    assert np.array_equal(run_model(frozen, [inputs])[0], run_model(saved, [inputs])[0])
