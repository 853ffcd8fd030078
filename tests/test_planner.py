"""The planner against the real TFLM interpreter: the smallest arena with which it builds, to the byte."""

from __future__ import annotations

import pytest

from tinyflow.corpus import PLANNER_CORPUS
from tinyflow.graph import read_graph
from tinyflow.greedy import Buffer, overlapping_pairs
from tinyflow.planner import plan_graph
from tinyflow.tflm_host import builds, smallest_arena


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
    from tinyflow.tflm_host import allocations

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
