"""Convert a tf_keras model to a full-integer int8 ``.tflite`` (int8 in, int8 out) for TFLM."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import InputError
from ..graph import ModelGraph, read_graph

DEFAULT_CALIBRATION_SAMPLES = 200


def to_int8_tflite(model: Any, calibration: np.ndarray, samples: int = DEFAULT_CALIBRATION_SAMPLES,
                   seed: int = 0) -> bytes:
    """``calibration``: float samples (from the training set) that set the activation ranges.

    The model is traced with batch size 1: TFLM runs one sample at a time, and a fixed batch keeps the
    converter from adding SHAPE/STRIDED_SLICE/PACK ops for a dynamic batch (e.g. around Flatten).
    """
    from .tfenv import native_stderr_silenced, tensorflow

    tf = tensorflow()
    if len(model.inputs) != 1:
        raise InputError(f"model '{model.name}' has {len(model.inputs)} inputs; tinyflow converts single-input "
                         "models")
    shape = [1, *[int(d) for d in model.inputs[0].shape[1:]]]
    if any(d <= 0 for d in shape):
        raise InputError(f"model '{model.name}' has an input with an unknown dimension {shape}; give it a fixed "
                         "shape")
    rng = np.random.default_rng(seed)
    picks = rng.permutation(len(calibration))[:samples]
    calib = calibration[picks].astype(np.float32)

    fn = tf.function(lambda x: model(x, training=False))
    concrete = fn.get_concrete_function(tf.TensorSpec(shape, tf.float32))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([concrete], model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = lambda: ([x[None, ...]] for x in calib)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    try:
        with native_stderr_silenced():
            data = converter.convert()
    except Exception as e:  # the converter raises ConverterError and friends with long MLIR dumps
        first = next((ln for ln in str(e).splitlines() if "error" in ln.lower()), str(e).splitlines()[0])
        raise InputError(f"TFLite could not convert model '{model.name}' to int8: {first.strip()[:300]}") from None
    check_full_integer(read_graph(data, f"{model.name} (converted)"), model.name)
    return data


def check_full_integer(graph: ModelGraph, name: str) -> None:
    floats = [t.name for t in graph.main.tensors if t.is_activation and t.dtype == "FLOAT32"]
    if floats:
        raise InputError(f"the converted model '{name}' still has float tensors ({', '.join(floats[:3])}); some "
                         "layer has no int8 kernel in TFLite, replace it")
