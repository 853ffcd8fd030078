"""Corrupt models (tests/mutants.py) through inspect, plan and generate: one line and exit 1/2, or a model
the real TFLM interpreter runs. Never a traceback, a signal, or "fits" for a model TFLM cannot run."""

from __future__ import annotations

import numpy as np
import pytest

from tests.mutants import SWAP_OPS, mutants, structural_mutations
from tinyflow.boards import find_board
from tinyflow.cli import main
from tinyflow.graph import read_graph
from tinyflow.model import run_model
from tinyflow.plan import assess

_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "FLOAT32": np.float32}


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err.strip()


def _problems(label: str, cmd: str, code: int, err: str, path: str) -> list[str]:
    out = []
    if code not in (0, 1, 2):
        out.append(f"{label}: {cmd} exit {code}: {err[:200]}")
    lines = err.splitlines()
    if code == 2 and (len(lines) != 1 or not lines[0].startswith("tinyflow: error: ") or path not in lines[0]):
        out.append(f"{label}: {cmd} error is not one line naming the file: {err[:300]!r}")
    if any(mark in err for mark in ("Traceback", 'File "', "^^^", "internal error")):
        out.append(f"{label}: {cmd} pasted a traceback: {err[:300]!r}")
    return out


def _fits_means_runs(label: str, data: bytes) -> list[str]:
    """What "fits" promises: the real interpreter (in a child) builds the model in the arena the plan gives
    (the sim board's plan is the host TFLM's, to the byte) and invokes it; a tight arena is where an op that
    writes past its output crashes."""
    g = read_graph(data, label)
    bp = assess(g, find_board("sim"), tflite=data)
    if not bp.fits:
        return [f"{label}: fits esp32s3 but not the sim board"]
    inputs = [np.zeros(t.shape, dtype=_NUMPY.get(t.dtype, np.int8)) for t in g.input_tensors()]
    try:
        run_model(data, inputs, bp.budget.arena_bytes, source=label)
    except Exception as e:  # any failure here is the defect under test
        return [f"{label}: plan said it fits but TFLM cannot run it in the planned arena: {e}"]
    return []


def _drive(name: str, corpus_model, tmp_path, capsys, byte_flips: int) -> tuple[list[str], dict[str, int]]:
    data = corpus_model(name)
    path = str(tmp_path / f"{name}-mutant.tflite")
    problems: list[str] = []
    seen = {"mutants": 0, "refused": 0, "fits": 0}
    for label, mutant in mutants(data, byte_flips=byte_flips, seed=7):
        with open(path, "wb") as f:
            f.write(mutant)
        seen["mutants"] += 1
        code, err = _run(["inspect", path], capsys)
        problems += _problems(label, "inspect", code, err, path)
        code, err = _run(["plan", "--board", "esp32s3", "--optimize", path], capsys)
        problems += _problems(label, "plan", code, err, path)
        seen["refused"] += code == 2
        if code == 0:
            seen["fits"] += 1
            problems += _fits_means_runs(label, mutant)
            out = tmp_path / "fw"
            code, err = _run(["generate", path, "--board", "esp32s3", "--out", str(out), "--force"], capsys)
            problems += _problems(label, "generate", code, err, path)
            if code != 0:
                problems.append(f"{label}: plan fits but generate exit {code}: {err[:200]}")
    return problems, seen


def test_structural_mutants_cover_every_class_the_fuzz_campaign_found(corpus_model):
    labels = [label for label, _ in structural_mutations(corpus_model("cnn_pool"))]
    for wanted in ("buffer index past the end", "unknown tensor type", "op output index -2",
                   "subgraph input out of range", "custom op code not UTF-8", "offline plan in a missing buffer",
                   "op 0 becomes MEAN", "op 1 becomes SOFTMAX"):
        assert wanted in labels
    assert sum(" becomes " in label for label in labels) == len(SWAP_OPS)


@pytest.mark.parametrize("name", ["cnn_pool", "op_mix"])
def test_corrupt_models_are_refused_in_one_line_or_run_in_tflm(name, corpus_model, tmp_path, capsys):
    problems, seen = _drive(name, corpus_model, tmp_path, capsys, byte_flips=30)
    assert not problems, "\n".join(problems[:20])
    # The corpus exercised both outcomes: most mutants are refused, and the harmless ones still plan.
    assert seen["refused"] > seen["mutants"] // 2 and seen["fits"] > 0, seen


def test_a_model_tflm_refuses_is_exit_2_with_what_tflm_said(corpus_model, tmp_path, capsys):
    from tinyflow.graph import pack_model as pack
    from tinyflow.graph import tflite_schema
    from tinyflow.graph import unpack_model as unpack

    s = tflite_schema()
    m = unpack(corpus_model("cnn_pool"))
    # A structurally valid file whose first op (a conv: input, filter, bias) is now a MEAN: TFLM's Prepare
    # refuses three inputs.
    oc = s.OperatorCodeT()
    oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.MEAN
    oc.version = 1
    m.operatorCodes.append(oc)
    m.subgraphs[0].operators[0].opcodeIndex = len(m.operatorCodes) - 1
    path = tmp_path / "mean.tflite"
    path.write_bytes(pack(m))
    code, err = _run(["plan", "--board", "esp32s3", str(path)], capsys)
    assert code == 2
    assert err.startswith(f"tinyflow: error: {path}: the host TFLM interpreter cannot run the model") and "MEAN" in err
    assert len(err.splitlines()) == 1


def test_deploy_of_corrupt_models_is_one_line_and_leaves_no_output(corpus_model, tmp_path, capsys):
    """deploy runs the model on the host TFLM before planning: the corrupt ones must still end in one line,
    exit 2, and no output folder (a refused model has no report to point at)."""
    wanted = {"buffer index past the end", "op 0 becomes MEAN", "offline plan count lies", "NaN quantization scale",
              "op output index -2", "random bytes #3"}
    data_path = tmp_path / "data.npz"
    np.savez(data_path, x_test=np.random.default_rng(0).uniform(0, 1, (8, 28, 28, 1)).astype(np.float32),
             y_test=np.arange(8) % 10)
    problems, count = [], 0
    for label, mutant in mutants(corpus_model("cnn_pool"), byte_flips=4, seed=7):
        if label not in wanted:
            continue
        count += 1
        path = tmp_path / "m.tflite"
        path.write_bytes(mutant)
        out = tmp_path / "out"
        code, err = _run(["deploy", str(path), "--data", str(data_path), "--out", str(out)], capsys)
        problems += _problems(label, "deploy", code, err, str(path))
        if code == 2 and out.exists():
            problems.append(f"{label}: a refused deploy left {out}")
        if code not in (0, 2):
            problems.append(f"{label}: deploy exit {code}: {err[:200]}")
    assert count == len(wanted)
    assert not problems, "\n".join(problems)
