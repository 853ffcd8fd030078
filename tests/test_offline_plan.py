"""Offline memory plans: smaller than TFLM's greedy plan, accepted by the real interpreter, same outputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.corpus import PLANNER_CORPUS
from tinyflow.cli import main
from tinyflow.graph.reader import read_graph
from tinyflow.model.tflm_host import builds, run_model, smallest_arena
from tinyflow.plan.placement import improve_model
from tinyflow.plan.planner import offline_offsets, plan_graph
from tinyflow.plan.schedule import reorder


def _random_inputs(graph, n=6, seed=0):
    t = graph.input_tensors()[0]
    return [np.random.default_rng(seed).integers(-128, 128, size=(n, *t.shape[1:])).astype(np.int8)]


def _same_outputs(a: bytes, b: bytes, arena_b: int) -> bool:
    x = _random_inputs(read_graph(a))
    return all(np.array_equal(p, q) for p, q in zip(run_model(a, x), run_model(b, x, arena_size=arena_b), strict=True))


def test_vww_shaped_model_needs_at_least_20_percent_less_activation_memory(corpus_model):
    data = corpus_model("mobilenet_v1_025_vww")
    graph = read_graph(data)
    greedy = plan_graph(graph, 8)
    new, plan = improve_model(data, graph, 8)
    assert plan.head_bytes <= 0.8 * plan.greedy_head_bytes == 0.8 * greedy.head_bytes
    assert plan.head_bytes == plan.lower_bound_bytes and plan.optimal  # 55,296 of 73,728 B
    # The metadata is what TFLM reads: one offset per tensor, -1 for constants.
    offsets = offline_offsets(read_graph(new))
    assert len(offsets) == len(graph.main.tensors)
    assert all(o == -1 for t, o in zip(graph.main.tensors, offsets, strict=True) if t.is_constant)
    # The real interpreter builds the rewritten model with the smaller arena, and not the original.
    predicted = plan_graph(read_graph(new), 8).min_arena_bytes
    assert predicted == smallest_arena(new)
    assert predicted < greedy.min_arena_bytes and not builds(data, predicted)
    assert _same_outputs(data, new, predicted)


def test_the_device_plan_reaches_the_bound_with_espnn_scratch(corpus_model):
    data = corpus_model("mobilenet_v1_025_vww")
    graph = read_graph(data)
    new, plan = improve_model(data, graph, 4, "esp-nn", "esp32s3")
    assert plan.head_bytes < plan.greedy_head_bytes
    assert plan_graph(read_graph(new), 4, "esp-nn", "esp32s3").head_bytes == plan.head_bytes


@pytest.mark.parametrize("name", [*PLANNER_CORPUS, "resnet8", "ad_autoencoder"])
def test_no_corpus_model_gets_worse(corpus_model, name):
    data = corpus_model(name)
    graph = read_graph(data)
    greedy = plan_graph(graph, 8)
    improved = improve_model(data, graph, 8)
    if improved is None:
        return  # TFLM's plan stays: it was already as good as we can find
    new, plan = improved
    new_plan = plan_graph(read_graph(new), 8)
    assert new_plan.head_bytes == plan.head_bytes < greedy.head_bytes
    assert new_plan.min_arena_bytes == smallest_arena(new) <= greedy.min_arena_bytes
    assert _same_outputs(data, new, new_plan.min_arena_bytes)


def test_reshape_in_place_goes_below_the_peak_of_live_bytes(corpus_model):
    data = corpus_model("conv1d")  # its Conv1D layers are EXPAND_DIMS/RESHAPE + CONV_2D + RESHAPE in TFLite
    graph = read_graph(data)
    new, plan = improve_model(data, graph, 8)
    assert plan.aliased_reshapes > 0 and plan.head_bytes < plan.lower_bound_bytes
    arena = plan_graph(read_graph(new), 8).min_arena_bytes
    assert arena == smallest_arena(new) and _same_outputs(data, new, arena)


def test_a_breadth_first_order_is_reordered_depth_first(corpus_model):
    data = corpus_model("branches")
    bfs = reorder(data, [0, 2, 1, 3, 4, 5, 6, 7])  # both wide convolutions first: two big tensors live at once
    graph = read_graph(bfs)
    assert [op.name for op in graph.main.operators][:4] == ["CONV_2D", "CONV_2D", "MAX_POOL_2D", "MAX_POOL_2D"]
    new, plan = improve_model(bfs, graph, 8)
    assert plan.reordered and plan.head_bytes < plan.greedy_head_bytes
    arena = plan_graph(read_graph(new), 8).min_arena_bytes
    assert arena == smallest_arena(new) < plan_graph(graph, 8).min_arena_bytes
    assert _same_outputs(bfs, new, arena)


def test_plan_optimize_reports_both_figures_and_writes_the_model(corpus_model, tmp_path, capsys):
    src = tmp_path / "vww.tflite"
    src.write_bytes(corpus_model("mobilenet_v1_025_vww"))
    out = tmp_path / "vww_planned.tflite"
    # --no-rewrite: the offline plan of the converter's graph itself (tests/test_rewrite.py covers rewrites)
    assert main(["plan", str(src), "--board", "sim", "--optimize", "--no-rewrite", "--write", str(out),
                 "--json"]) == 0
    j = json.loads(capsys.readouterr().out)
    assert j["arena"]["min_bytes"] < j["arena"]["greedy_min_bytes"]
    assert j["arena"]["min_bytes"] == smallest_arena(out.read_bytes())
    assert j["arena"]["offline_plan"]["head_bytes"] <= 0.8 * j["arena"]["offline_plan"]["greedy_head_bytes"]
    assert main(["plan", str(src), "--board", "sim", "--write", str(out)]) == 2  # exists, and no --force
    assert "exists" in capsys.readouterr().err


def test_deploy_uses_the_offline_plan_unless_told_not_to(corpus_model, tmp_path):
    from tinyflow.pipeline import DeployOptions, deploy

    src = tmp_path / "vww.tflite"
    src.write_bytes(corpus_model("mobilenet_v1_025_vww"))
    planned = deploy(src, DeployOptions(board="esp32s3", out=str(tmp_path / "a"), runs=3, rewrite=False))
    arena = planned.report["memory"]["arena"]
    assert arena["offline_plan"] is not None and arena["min_bytes"] < arena["greedy_min_bytes"]
    assert planned.report["model"]["offline_memory_plan"] is True
    assert offline_offsets(read_graph(planned.tflite_path.read_bytes())) is not None
    config = (planned.out_dir / planned.report["firmware"]["platformio"] / "src" / "tinyflow_config.h").read_text()
    assert f"kTinyflowPlannedArenaBytes = {arena['min_bytes']};" in config
    assert planned.report["device"]["kind"] == "simulated"  # the simulated board ran the rewritten model
    plain = deploy(src, DeployOptions(board="esp32s3", out=str(tmp_path / "b"), runs=3, offline_plan=False))
    assert plain.report["memory"]["arena"]["offline_plan"] is None
    assert plain.report["memory"]["arena"]["min_bytes"] == arena["greedy_min_bytes"]

