"""The planner against the real TFLM interpreter: the smallest arena with which it builds, to the byte."""

from __future__ import annotations

import numpy as np
import pytest

from tests.corpus import PLANNER_CORPUS
from tinyflow.graph.reader import read_graph
from tinyflow.model.tflm_host import builds, smallest_arena
from tinyflow.plan.greedy import Buffer, overlapping_pairs
from tinyflow.plan.planner import plan_graph


@pytest.mark.parametrize("name", [*PLANNER_CORPUS, "resnet8"])
def test_sim_plan_equals_the_real_interpreters_smallest_arena(corpus_model, name):
    data = corpus_model(name)
    plan = plan_graph(read_graph(data), pointer_bytes=8, kernel_library="reference")
    truth = smallest_arena(data)  # bisection on the tflite-micro interpreter, each trial in a forked process
    assert plan.min_arena_bytes == truth, (name, plan.binding)
    # and the plan itself is valid: live buffers never share bytes
    buffers = [Buffer(b.size, b.first, b.last) for b in plan.buffers]
    assert overlapping_pairs(buffers, plan.greedy_offsets) == []
    assert plan.lower_bound_bytes <= plan.head_bytes


def test_the_plan_is_tight_on_both_sides(corpus_model):
    data = corpus_model("cnn_pool")
    n = plan_graph(read_graph(data), 8).min_arena_bytes
    assert builds(data, n) and not builds(data, n - 1)


def test_small_models_are_limited_by_planning_memory_not_by_head_plus_tail(corpus_model):
    # The recorded head + tail understates what small models need: TFLM's planner borrows 40 B per buffer.
    from tinyflow.model.tflm_host import allocations

    data = corpus_model("mlp")
    plan = plan_graph(read_graph(data), 8)
    recorded = allocations(data)
    assert plan.head_bytes == recorded.head_bytes
    assert plan.min_arena_bytes > recorded.total_bytes
    assert "planning" in plan.binding


def test_mcu_plan_is_smaller_than_the_host_and_adds_espnn_scratch(corpus_model):
    g = read_graph(corpus_model("ds_cnn"))
    host = plan_graph(g, 8, "reference")
    mcu_ref = plan_graph(g, 4, "reference")
    s3 = plan_graph(g, 4, "esp-nn", "esp32s3")
    esp32 = plan_graph(g, 4, "esp-nn", "esp32")
    assert mcu_ref.tail_bytes < host.tail_bytes  # 32-bit structs
    assert mcu_ref.head_bytes == host.head_bytes  # the same activations
    assert s3.head_bytes > mcu_ref.head_bytes  # ESP-NN's S3 kernels ask for scratch
    # The DS-CNN depthwise 3x3 over 25x5x64 requests 12,688 B with esp-nn 1.2.3 on the S3: the value of
    # esp_nn_get_depthwise_conv_scratch_size_esp32s3() compiled from esp-nn's C for that shape.
    assert max(b.size for b in s3.buffers if b.tensor is None) == 12688
    # The generic ESP32 kernels need no conv scratch; only softmax's 4 * 12 bytes.
    assert [b.size for b in esp32.buffers if b.tensor is None] == [48]


def test_two_outputs_and_concatenate_and_add_are_planned(corpus_model):
    for name, op in (("two_outputs", "FULLY_CONNECTED"), ("concat", "CONCATENATION"), ("resnet_block", "ADD")):
        g = read_graph(corpus_model(name))
        assert op in g.op_names
        assert plan_graph(g, 8).min_arena_bytes > 0


def _convert(concrete, module=None, float_io_int8: np.ndarray | None = None, resource_variables=False) -> bytes:
    import tensorflow as tf

    from tinyflow.model.tfenv import native_stderr_silenced

    c = tf.lite.TFLiteConverter.from_concrete_functions([concrete], module)
    if float_io_int8 is not None:  # int8 inside, float at the edges: the converter adds QUANTIZE/DEQUANTIZE
        c.optimizations = [tf.lite.Optimize.DEFAULT]
        c.representative_dataset = lambda: ([x[None]] for x in float_io_int8)
        c.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    c.experimental_enable_resource_variables = resource_variables
    with native_stderr_silenced():
        return c.convert()


def _generated_models() -> dict[str, tuple[bytes, set[str]]]:
    """Models the converter builds with ops outside the Keras corpus: float I/O around an int8 body,
    WHILE and IF subgraphs, a resource variable."""
    import tensorflow as tf

    from tinyflow.model.tfenv import tf_keras

    k = tf_keras()
    k.utils.set_random_seed(3)
    inp = k.Input((12, 12, 2))
    x = k.layers.Conv2D(6, 3, activation="relu")(inp)
    x = k.layers.Flatten()(x)
    model = k.Model(inp, k.layers.Dense(4, activation="softmax")(x))
    fn = tf.function(lambda t: model(t, training=False)).get_concrete_function(tf.TensorSpec([1, 12, 12, 2]))
    calib = np.random.default_rng(0).normal(size=(16, 12, 12, 2)).astype(np.float32)
    models = {"float_io": (_convert(fn, model, float_io_int8=calib), {"QUANTIZE", "DEQUANTIZE"})}

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def loop(x):
        _, y = tf.while_loop(lambda i, v: i < 3, lambda i, v: (i + 1, tf.nn.relu(v * 2.0 - 1.0)), [0, x])
        return y

    @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
    def branch(x):
        return tf.cond(tf.reduce_sum(x) > 0, lambda: tf.nn.relu(x * 3.0), lambda: tf.tanh(x) + 1.0)

    class Accumulator(tf.Module):
        def __init__(self):
            self.v = tf.Variable(tf.zeros([1, 8]))

        @tf.function(input_signature=[tf.TensorSpec([1, 8], tf.float32)])
        def __call__(self, x):
            self.v.assign_add(x)
            return self.v.read_value() * 2.0

    acc = Accumulator()
    models["while"] = (_convert(loop.get_concrete_function()), {"WHILE"})
    models["if"] = (_convert(branch.get_concrete_function()), {"IF"})
    models["resource_variable"] = (_convert(acc.__call__.get_concrete_function(), acc, resource_variables=True),
                                   {"VAR_HANDLE", "ASSIGN_VARIABLE", "READ_VARIABLE"})
    return models


def test_quantize_control_flow_and_resource_variables_are_planned_exactly():
    for name, (data, ops) in _generated_models().items():
        g = read_graph(data)
        assert ops <= {op.name for sg in g.subgraphs for op in sg.operators}, name
        plan = plan_graph(g, 8)
        assert plan.min_arena_bytes == smallest_arena(data), name


def test_an_op_without_an_allocation_model_is_a_clear_error(corpus_model):
    import dataclasses

    from tinyflow.errors import InputError
    from tinyflow.plan.kernels import supported

    g = read_graph(corpus_model("mlp"))
    # RELU_N1_TO_1 is a real builtin that TFLM has no kernel for, so no allocation model either
    ops = (dataclasses.replace(g.main.operators[0], name="RELU_N1_TO_1"), *g.main.operators[1:])
    odd = dataclasses.replace(g, subgraphs=(dataclasses.replace(g.main, operators=ops),))
    assert not supported("RELU_N1_TO_1")
    with pytest.raises(InputError, match=r"op 0 \(RELU_N1_TO_1\).*no allocation model"):
        plan_graph(odd, 8)
