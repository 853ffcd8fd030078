"""The models users bring, in each mode: every family deploys with PTQ, and with QAT/PQAT where TF-MOT can.

Real TF conversion, real TF-MOT, the real TFLM interpreter behind the simulated board. Each family is a
small Keras 3 model trained two epochs on a learnable task (``model_families.task``); docs/optimize.md
holds the table this file checks.
"""

from __future__ import annotations

import pytest

from tinyflow.errors import DoesNotFitError, InputError
from tinyflow.model import OptimizeOptions
from tinyflow.pipeline import DeployOptions, deploy
from tinyflow.progress import RecordingReporter

MODES = {
    "ptq": OptimizeOptions(),
    "prune": OptimizeOptions(prune=0.5, epochs=1),
    "qat": OptimizeOptions(qat=True, epochs=1),
    "pqat": OptimizeOptions(prune=0.5, qat=True, epochs=1),
    "2:4": OptimizeOptions(structured_2_4=True, epochs=1),
}

# family -> modes that deploy. Every family runs PTQ; QAT and PQAT run wherever TF-MOT can (with tinyflow's
# configs); plain pruning and 2:4 share one code path, so a few families cover them. docs/optimize.md has
# the full table, measured on every mode.
_SMALL = ("conv1d", "separable", "conv_transpose", "upsampling", "normalization", "layer_norm", "activations",
          "merge_and_layout")
WORKS: dict[str, tuple[str, ...]] = {name: ("ptq", "qat", "pqat") for name in _SMALL}
for name in ("conv1d", "separable"):
    WORKS[name] += ("prune",)
for name in ("separable", "conv_transpose"):
    WORKS[name] += ("2:4",)
WORKS.update({"lstm": ("ptq",), "gru": ("ptq", "prune", "2:4"), "mobilenet_v2": ("ptq",),
              "mobilenet_v3_small": ("ptq", "qat"), "mobilenet_v3_small_min": ("ptq",)})
# (family, mode) -> (error type, words the one-line error must hold). Refused by TF-MOT: before training;
# refused by TFLM: the plan says which op (exit 1, with the reports); LOG: no allocation model in the planner.
REFUSED = {
    ("lstm", "qat"): (InputError, "no quantization-aware training for recurrent layers"),
    ("gru", "pqat"): (InputError, "no quantization-aware training for recurrent layers"),
    ("gelu", "ptq"): (DoesNotFitError, "GELU"),
    ("selu", "ptq"): (DoesNotFitError, "EXP"),
    ("softplus", "ptq"): (InputError, "LOG"),
}
# The MobileNets first: they are the longest cells, and under xdist the longest units should start first.
CASES = sorted(((f, m) for f, modes in WORKS.items() for m in modes), key=lambda case: "mobilenet" not in case[0])
# Families whose task is learnt in two epochs; the MobileNets are too big for that and only show int8 == float.
LEARNT = {*_SMALL, "lstm", "gru"} - {"merge_and_layout"}  # its min/max chain learns the task only partly


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_family_deploys(family_model, tmp_path, name, mode):
    model, data = family_model(name)
    reporter = RecordingReporter()
    result = deploy(model, DeployOptions(board="esp32s3", data=str(data), optimize=MODES[mode],
                                         out=str(tmp_path / "out")), reporter)
    acc, dev = result.report["accuracy"], result.report["device"]
    reference = acc["float_optimized"] if acc["float_optimized"] is not None else acc["float"]
    assert acc["int8"] >= reference - 0.03, (acc, reporter.notes)
    if name in LEARNT and mode in ("ptq", "qat", "pqat"):
        assert acc["float"] > 0.6  # the task is learnable: the comparison above means something
    assert dev["bit_exact_share"] == 1.0 and dev["kind"] == "simulated"
    assert result.report["optimize"]["method"] == {"ptq": "ptq", "prune": "prune+ptq", "qat": "qat", "pqat": "pqat",
                                                   "2:4": "prune+ptq"}[mode]
    if mode in ("prune", "pqat"):
        # Of all kernel weights: a separable conv's depthwise kernel is not pruned by TF-MOT.
        assert result.report["optimize"]["sparsity"]["overall"] > 0.3


@pytest.mark.slow
@pytest.mark.parametrize(("name", "mode"), list(REFUSED), ids=[f"{f}-{m}" for f, m in REFUSED])
def test_family_is_refused_clearly(family_model, tmp_path, name, mode):
    model, data = family_model(name)
    error, words = REFUSED[(name, mode)]
    reporter = RecordingReporter()
    with pytest.raises(error) as e:
        deploy(model, DeployOptions(board="esp32s3", data=str(data), optimize=MODES[mode],
                                    out=str(tmp_path / "out")), reporter)
    message = str(e.value)
    assert words in message and "\n" not in message and "Traceback" not in message
    if "qat" in mode:
        assert "optimize" not in reporter.stages  # refused before any training started
