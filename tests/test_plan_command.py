"""`tinyflow plan`: hazards predicted before TFLM aborts, oversized models explained, bad input refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from tinyflow.cli import main
from tinyflow.errors import DoesNotFitError
from tinyflow.graph import rewrite_flatbuffer as rewrite
from tinyflow.graph.reader import read_graph
from tinyflow.model.tflm_host import smallest_arena
from tinyflow.plan.hazards import ABORT, ERROR, find_hazards


def _set_scale(data: bytes, op_name: str, which: str, scale: float, zero_point: int | None = None) -> bytes:
    """Change the quantization of the first ``op_name``'s input 0 or output 0."""
    g = read_graph(data)
    op = next(o for o in g.main.operators if o.name == op_name)
    index = op.inputs[0] if which == "in" else op.outputs[0]

    def edit(model):
        q = model.subgraphs[0].tensors[index].quantization
        q.scale = np.array([scale], dtype=np.float32)
        if zero_point is not None:
            q.zeroPoint = np.array([zero_point], dtype=np.int64)

    return rewrite(data, edit)


def test_softmax_with_constant_logits_is_a_hazard_and_really_aborts_tflm(corpus_model, tmp_path, capsys):
    bad = _set_scale(corpus_model("mlp"), "SOFTMAX", "in", 1e-9)
    hazards = find_hazards(read_graph(bad))
    assert [(h.op, h.kind) for h in hazards] == [("SOFTMAX", ABORT)]
    assert "constant over the calibration data" in hazards[0].cause
    # The real interpreter dies on it: the prediction is right, and tinyflow survives it.
    with pytest.raises(DoesNotFitError, match="crashed"):
        smallest_arena(bad)
    path = tmp_path / "bad.tflite"
    path.write_bytes(bad)
    assert main(["plan", str(path), "--board", "esp32s3"]) == 1
    out = capsys.readouterr().out
    assert "hazard" in out and "SOFTMAX" in out
    assert main(["plan", str(path), "--board", "sim", "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["fits"] is False and report["hazards"][0]["kind"] == "abort"


def test_softmax_output_scale_other_than_1_256_is_an_error_hazard(corpus_model):
    bad = _set_scale(corpus_model("mlp"), "SOFTMAX", "out", 1 / 128)
    assert [(h.op, h.kind) for h in find_hazards(read_graph(bad))] == [("SOFTMAX", ERROR)]


def test_a_good_model_has_no_hazards(corpus_model):
    for name in ("mlp", "cnn_pool", "ds_cnn", "resnet_block", "concat", "conv1d"):
        assert find_hazards(read_graph(corpus_model(name))) == []


def test_plan_json_has_the_documented_keys(corpus_model, tmp_path, capsys):
    path = tmp_path / "m.tflite"
    path.write_bytes(corpus_model("ds_cnn"))
    assert main(["plan", str(path), "--board", "esp32s3", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    for key in ("min_bytes", "head_bytes", "tail_bytes", "region"):
        assert key in j["arena"]
    for key in ("model_bytes", "total_bytes", "limit_bytes"):
        assert key in j["flash"]
    assert j["fits"] is True and j["hazards"] == [] and len(j["ops"]) == 12
    assert j["latency_estimate_us"] > 0 and "estimate" in j["latency_estimate_basis"]
    assert "ESP-NN" in j["kernels"]
    assert j["arena"]["region"] == "sram"


TINY_BOARD = Path(__file__).parent / "data" / "tiny_board.toml"


def test_oversized_model_says_what_does_not_fit_and_what_to_do(corpus_model, tmp_path, capsys):
    path = tmp_path / "vww.tflite"
    path.write_bytes(corpus_model("mobilenet_v1_025_vww"))
    board = TINY_BOARD
    # 64 KiB for the arena and no PSRAM: the ~100 KB the VWW-shaped model needs cannot fit.
    assert main(["plan", str(path), "--board", "tiny-m4", "--board-file", str(board)]) == 1
    out = capsys.readouterr().out
    assert "does not fit" in out and "KiB of internal SRAM" in out
    assert "to do:" in out and "shrink the activations live at the peak" in out
    assert "op " in out  # names the ops that produce the peak tensors
    assert "tinyflow plan --optimize" in out  # greedy leaves room on this model
    assert "boards it fits" in out and "esp32s3" in out
    assert main(["plan", str(path), "--board", "esp32s3"]) == 0  # with 160 KiB it fits


def test_psram_is_chosen_when_sram_is_too_small(corpus_model, tmp_path, capsys):
    path = tmp_path / "vww.tflite"
    path.write_bytes(corpus_model("mobilenet_v1_025_vww"))
    assert main(["plan", str(path), "--board", "esp32s3", "--psram", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["arena"]["region"] == "psram" and "slower" in " ".join(j["notes"])


@pytest.mark.parametrize("content, needle", [
    (b"\x00" * 3, "not a TFLite flatbuffer"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)), "not a TFLite flatbuffer"),
])
def test_random_bytes_are_refused(tmp_path, capsys, content, needle):
    path = tmp_path / "x.tflite"
    path.write_bytes(content)
    assert main(["plan", str(path)]) == 2
    assert needle in capsys.readouterr().err


def test_truncated_model_is_refused(corpus_model, tmp_path, capsys):
    path = tmp_path / "cut.tflite"
    path.write_bytes(corpus_model("cnn_pool")[:2000])
    assert main(["plan", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "truncated or corrupt" in err and len(err.splitlines()) == 1


def test_custom_op_is_listed_with_its_index(corpus_model, tmp_path, capsys):
    def edit(model):
        code = model.operatorCodes[model.subgraphs[0].operators[1].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = 32  # CUSTOM
        code.customCode = b"MyFancyOp"

    path = tmp_path / "custom.tflite"
    path.write_bytes(rewrite(corpus_model("mlp"), edit))
    assert main(["plan", str(path), "--board", "esp32s3"]) == 1
    out = capsys.readouterr().out
    assert "CUSTOM:MyFancyOp" in out and "op 1" in out
    assert main(["inspect", str(path)]) == 1


def test_dynamic_shape_is_refused(corpus_model, tmp_path, capsys):
    def edit(model):
        t = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
        t.shapeSignature = np.array([1, -1], dtype=np.int32)

    path = tmp_path / "dyn.tflite"
    path.write_bytes(rewrite(corpus_model("mlp"), edit))
    assert main(["plan", str(path)]) == 2
    assert "dynamic shape" in capsys.readouterr().err


def test_a_while_loop_model_is_planned_from_the_cli(tmp_path, capsys):
    from tinyflow.model.tfenv import tensorflow
    from tinyflow.model.tflm_host import smallest_arena

    tf = tensorflow()

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def loop(x):
        i = tf.constant(0)
        return tf.while_loop(lambda i, x: i < 3, lambda i, x: (i + 1, tf.nn.relu(x * 2.0 - 1.0)), [i, x])[1]

    data = tf.lite.TFLiteConverter.from_concrete_functions([loop.get_concrete_function()]).convert()
    path = tmp_path / "while.tflite"
    path.write_bytes(data)
    assert main(["plan", str(path), "--board", "sim", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["arena"]["min_bytes"] == smallest_arena(data)


def test_float_model_is_planned_with_a_warning(tmp_path, capsys):
    from tests.corpus import build_keras
    from tinyflow.model.tfenv import tensorflow

    tf = tensorflow()
    model = build_keras("mlp")
    fn = tf.function(lambda x: model(x)).get_concrete_function(tf.TensorSpec([1, 20], tf.float32))
    data = tf.lite.TFLiteConverter.from_concrete_functions([fn], model).convert()
    path = tmp_path / "float.tflite"
    path.write_bytes(data)
    assert main(["plan", str(path), "--board", "sim", "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert any("not fully int8" in n for n in j["notes"])
    assert j["arena"]["min_bytes"] == smallest_arena(data)


def test_a_1d_bias_with_the_filters_axis_is_accepted_as_tflm_accepts_it(corpus_model, tmp_path, capsys):
    """Older converters gave a conv's bias its filter's quantized dimension (3) on a 1-D tensor: TFLM never
    reads a bias's axis, and its own person-detection model is built that way (the validator refused it)."""

    def legacy_bias_axis(model) -> None:
        sg = model.subgraphs[0]
        for op in sg.operators:
            if len(op.inputs) > 2 and op.inputs[2] >= 0:
                q = sg.tensors[op.inputs[2]].quantization
                if q is not None and q.scale is not None and len(q.scale) > 1:
                    q.quantizedDimension = 3

    data = rewrite(corpus_model("cnn_pool"), legacy_bias_axis)
    assert any(t.quantization is not None and t.quantization.axis == 3 and len(t.shape) == 1
               for t in read_graph(data).main.tensors)
    path = tmp_path / "legacy.tflite"
    path.write_bytes(data)
    assert main(["plan", str(path), "--board", "sim", "--json"]) == 0  # includes the host TFLM build and invoke
    assert json.loads(capsys.readouterr().out)["fits"]
