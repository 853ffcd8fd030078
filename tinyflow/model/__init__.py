"""Stages 1-3: load a Keras model (or a ``.tflite``), optimize it with TF-MOT, convert it to int8, evaluate it.

Takes a model path, a ``Dataset`` and ``OptimizeOptions``; returns a ``ModelResult`` (the int8 ``.tflite``
bytes, its ``ModelGraph`` and the host-TFLM evaluation). TensorFlow is imported on first use only.
``tflm_host`` runs the real TFLM interpreter in a child process for every later stage.
"""

from .convert import convert_int8, kept_converter
from .dataset import (
    Dataset,
    check_matches_graph,
    check_matches_input,
    check_matches_output,
    class_ids,
    load_dataset,
)
from .evaluation import HostEvaluation, evaluate, roc_auc, sample_errors
from .load import LoadedModel, load_model
from .optimization import OptimizedModel, OptimizeOptions, optimize
from .stage import ModelResult, build_model, model_report
from .tfenv import keras3, native_stderr_silenced, tensorflow, tf_keras, tfmot
from .tflm_host import (
    DEFAULT_RUN_ARENA,
    Allocations,
    allocations,
    builds,
    check_runs,
    run_model,
    smallest_arena,
    tflm_version,
)

__all__ = [
    "DEFAULT_RUN_ARENA",
    "Allocations",
    "Dataset",
    "HostEvaluation",
    "LoadedModel",
    "ModelResult",
    "OptimizeOptions",
    "OptimizedModel",
    "allocations",
    "build_model",
    "builds",
    "check_matches_graph", "check_matches_input", "check_matches_output",
    "check_runs",
    "class_ids",
    "convert_int8",
    "evaluate",
    "kept_converter",
    "keras3",
    "load_dataset",
    "load_model",
    "model_report",
    "native_stderr_silenced",
    "optimize",
    "roc_auc",
    "run_model",
    "sample_errors",
    "smallest_arena",
    "tensorflow",
    "tf_keras",
    "tflm_version",
    "tfmot",
]
