"""Every bad input gets a one-line error naming the problem, exit code 2, and leaves no output behind."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from tinyflow.cli import main


@pytest.fixture(scope="module")
def digits_tflite(digits_example, tmp_path_factory):
    from tinyflow.pipeline import DeployOptions, deploy

    out = tmp_path_factory.mktemp("tfl") / "out"
    options = DeployOptions(data=str(digits_example[1]), out=str(out), eval_limit=20)
    return deploy(digits_example[0], options).tflite_path


def _fails(capsys, argv, *needles, code=2):
    assert main(argv) == code
    err = capsys.readouterr().err.strip().splitlines()
    last = err[-1]
    assert last.startswith("tinyflow: error:"), err
    assert "Traceback" not in "\n".join(err)
    for n in needles:
        assert n in last, (n, last)
    return last


def _write_npz(path, **arrays):
    np.savez(path, **arrays)
    return path


@pytest.fixture()
def out(tmp_path):
    return tmp_path / "out"


def test_missing_model_file(capsys, tmp_path, out):
    _fails(capsys, ["deploy", str(tmp_path / "nope.keras"), "--out", str(out)], "nope.keras", "not found")
    assert not out.exists()


@pytest.mark.parametrize("name, content, needle", [
    ("bad.keras", b"not a zip at all", "not a valid .keras file"),
    ("bad.h5", b"\x89HDF\r\n\x1a\n garbage", "not a valid HDF5"),
    ("bad.tflite", bytes(range(256)) * 4, "not a TFLite flatbuffer"),
    ("model.onnx", b"whatever", "unknown model format"),
])
def test_corrupt_or_unknown_model_files(capsys, tmp_path, out, digits_example, name, content, needle):
    path = tmp_path / name
    path.write_bytes(content)
    _fails(capsys, ["deploy", str(path), "--data", str(digits_example[1]), "--out", str(out)], name, needle)
    assert not out.exists()


def test_truncated_tflite(capsys, tmp_path, out, digits_tflite, digits_example):
    path = tmp_path / "cut.tflite"
    path.write_bytes(digits_tflite.read_bytes()[:3000])
    _fails(capsys, ["deploy", str(path), "--data", str(digits_example[1]), "--out", str(out)], "cut.tflite",
           "truncated or corrupt")
    assert not out.exists()


def test_data_shape_does_not_match_the_model(capsys, tmp_path, out, digits_example):
    data = _write_npz(tmp_path / "d.npz", x_train=np.zeros((10, 28, 28, 1), "float32"), y_train=np.zeros(10, "int64"),
                      x_test=np.zeros((5, 28, 28, 1), "float32"), y_test=np.zeros(5, "int64"))
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(data), "--out", str(out)], "d.npz", "28x28x1",
           "8x8x1")
    assert not out.exists()


def test_nans_in_the_data(capsys, tmp_path, out, digits_example):
    arrays = dict(np.load(digits_example[1]))
    arrays["x_test"] = arrays["x_test"].copy()
    arrays["x_test"][3, 2, 2, 0] = np.nan
    data = _write_npz(tmp_path / "nan.npz", **arrays)
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(data), "--out", str(out)], "nan.npz", "NaN",
           "x_test")
    assert not out.exists()


@pytest.mark.parametrize("flag", [["--prune", "0.5"], ["--qat"]])
def test_labels_missing_when_fine_tuning_needs_them(capsys, tmp_path, out, digits_example, flag):
    arrays = dict(np.load(digits_example[1]))
    data = _write_npz(tmp_path / "nolabels.npz", x_train=arrays["x_train"], x_test=arrays["x_test"])
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(data), *flag, "--out", str(out)],
           "nolabels.npz", "labels", "post-training quantization")
    assert not out.exists()


def test_without_labels_post_training_quantization_still_works(tmp_path, digits_example):
    arrays = dict(np.load(digits_example[1]))
    data = _write_npz(tmp_path / "nolabels.npz", x_train=arrays["x_train"], x_test=arrays["x_test"][:50])
    assert main(["deploy", str(digits_example[0]), "--data", str(data), "--out", str(tmp_path / "o")]) == 0
    import json

    acc = json.loads((tmp_path / "o" / "report.json").read_text())["accuracy"]
    assert acc["task"] == "unlabelled" and acc["int8"] is None and acc["agreement"] >= 0.9


@pytest.mark.parametrize("value", ["0", "1", "1.5", "-0.2"])
def test_sparsity_outside_0_1(capsys, out, digits_example, value):
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(digits_example[1]), "--prune", value,
                    "--out", str(out)], f"--prune {float(value)}", "outside (0, 1)")
    assert not out.exists()


def test_output_directory_with_other_files_is_refused_without_force(capsys, tmp_path, digits_tflite, digits_example):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    argv = ["deploy", str(digits_tflite), "--data", str(digits_example[1]), "--limit", "10", "--out", str(out)]
    _fails(capsys, argv, "mine", "--force")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*argv, "--force"]) == 0
    assert (out / "model_int8.tflite").is_file() and not (out / "notes.txt").exists()
    # tinyflow's own output directory is replaced on a re-run without --force.
    assert main(argv) == 0


def test_missing_data_file_and_non_npz(capsys, tmp_path, out, digits_example):
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(tmp_path / "x.npz"), "--out", str(out)],
           "x.npz", "not found")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"nope")
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(bad), "--out", str(out)], "bad.npz",
           "not a readable .npz")
    assert not out.exists()


def test_prune_on_a_tflite_is_refused(capsys, out, digits_tflite, digits_example):
    _fails(capsys, ["deploy", str(digits_tflite), "--data", str(digits_example[1]), "--prune", "0.5", "--out",
                    str(out)], "need a Keras model")
    assert not out.exists()


def test_the_process_prints_no_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tinyflow", "deploy", str(tmp_path / "missing.h5"), "--out",
                           str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"tinyflow: error: {tmp_path / 'missing.h5'}: model file not found"]


def test_a_bug_is_one_line_naming_it_an_internal_error(monkeypatch, capsys, tmp_path):
    """The one error boundary: an exception that is not a TinyflowError is a bug, shown as one line (the
    traceback only with TINYFLOW_DEBUG=1), never a pasted traceback."""
    import tinyflow.commands.inspect as inspect_cmd

    def broken(a):
        raise RuntimeError("tensor 'x'\n  File \"reader.py\", line 3\n    ^^^^")

    monkeypatch.setattr(inspect_cmd, "cmd_inspect", broken)
    monkeypatch.delenv("TINYFLOW_DEBUG", raising=False)
    code = main(["inspect", str(tmp_path / "any.tflite")])
    err = capsys.readouterr().err.strip()
    assert code == 3
    assert len(err.splitlines()) == 1 and err.startswith("tinyflow: internal error: RuntimeError:")
    assert "TINYFLOW_DEBUG=1" in err and "^^^" not in err
    monkeypatch.setenv("TINYFLOW_DEBUG", "1")
    with pytest.raises(RuntimeError):
        main(["inspect", str(tmp_path / "any.tflite")])


def _digits_arrays(digits_example, **changes):
    arrays = {k: v for k, v in np.load(digits_example[1]).items()}
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize("change, needles", [
    # float64 past float32's range: was inf in the model and a segfault in the converter.
    (lambda a: {"x_train": np.where(np.arange(a["x_train"].size).reshape(a["x_train"].shape) == 5, 1e300,
                                    a["x_train"].astype(np.float64))}, ["x_train", "float32's range"]),
    (lambda a: {"y_test": a["y_test"].astype(np.complex64)}, ["y_test", "complex64", "real numbers"]),
    # Float class ids (not one-hot): a reshape traceback in evaluation before.
    (lambda a: {"y_train": a["y_train"].astype(np.float32) + 0.0, "y_test": a["y_test"].astype(np.float32)},
     ["y_train", "1 values per sample", "outputs 10"]),
    (lambda a: {"y_test": a["y_test"] + 7}, ["y_test", "class ids from 7 to 16", "10 classes"]),
    (lambda a: {"y_train": np.eye(12)[a["y_train"] % 12], "y_test": np.eye(12)[a["y_test"] % 12]},
     ["y_train", "one-hot rows of 12 classes", "outputs 10"]),
    (lambda a: {"labels": np.array(["zero", "o\x00ne", *map(str, range(2, 10))])}, ["labels[1]", "NUL"]),
])
def test_data_that_does_not_fit_the_model_is_refused_before_any_work(capsys, tmp_path, out, digits_example, change,
                                                                     needles):
    base = _digits_arrays(digits_example)
    data = _write_npz(tmp_path / "bad.npz", **{**base, **change(base)})
    _fails(capsys, ["deploy", str(digits_example[0]), "--data", str(data), "--out", str(out)], "bad.npz", *needles)
    assert not out.exists() and not list(tmp_path.glob(".out.staging-*"))


def test_measure_and_generate_check_the_sample_shape_against_the_tflite(capsys, tmp_path, digits_tflite):
    data = _write_npz(tmp_path / "wrong.npz", x_test=np.zeros((4, 28, 28, 1), "float32"),
                      y_test=np.zeros(4, "int64"))
    _fails(capsys, ["measure", str(digits_tflite), "--data", str(data)], "wrong.npz", "28x28x1", "8x8x1")
    _fails(capsys, ["generate", str(digits_tflite), "--board", "esp32s3", "--data", str(data), "--self-test", "2",
                    "--out", str(tmp_path / "fw")], "wrong.npz", "28x28x1", "8x8x1")
    labels = _write_npz(tmp_path / "labels.npz", x_test=np.zeros((4, 8, 8, 1), "float32"),
                        y_test=np.full(4, 11, "int64"))
    _fails(capsys, ["measure", str(digits_tflite), "--data", str(labels)], "labels.npz", "class ids from 11 to 11")
    assert not (tmp_path / "fw").exists()


@pytest.mark.parametrize("make", ["device", "fifo", "folder"])
def test_a_model_path_that_is_not_a_regular_file_is_refused_without_reading_it(capsys, tmp_path, make):
    import os

    path = {"device": "/dev/zero", "fifo": str(tmp_path / "fifo.tflite"), "folder": str(tmp_path)}[make]
    if make == "fifo":
        os.mkfifo(path)
    _fails(capsys, ["inspect", path], path, "not a regular file")
    _fails(capsys, ["plan", path, "--board", "esp32s3"], path, "not a regular file")
