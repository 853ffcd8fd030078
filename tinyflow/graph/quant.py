"""Quantize inputs and dequantize outputs exactly as a TFLite tensor's parameters say."""

from __future__ import annotations

import numpy as np

from ..errors import InputError
from .reader import Tensor

_NUMPY = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "FLOAT32": np.float32,
          "INT64": np.int64, "BOOL": np.uint8}


def numpy_dtype(dtype: str) -> type:
    """The numpy type a tensor's values come in (TFLite's BOOL is a byte)."""
    return _NUMPY.get(dtype, np.uint8)


def random_values(dtype: str, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Random values in a tensor's own type: its whole integer range, or unit-normal floats."""
    if dtype == "FLOAT32":
        return rng.normal(size=shape).astype(np.float32)
    info = np.iinfo(numpy_dtype(dtype))
    return rng.integers(info.min, info.max + 1, size=shape).astype(info.dtype)


_RANGES = {"INT8": (-128, 127, np.int8), "UINT8": (0, 255, np.uint8), "INT16": (-32768, 32767, np.int16)}


def quantize(x: np.ndarray, tensor: Tensor) -> np.ndarray:
    """Float samples -> the tensor's integer type; a float tensor takes the floats as they are."""
    if tensor.dtype == "FLOAT32":
        return x.astype(np.float32)
    if tensor.dtype not in _RANGES or tensor.quantization is None:
        raise InputError(f"input tensor '{tensor.name}' has type {tensor.dtype} without quantization; "
                         "tinyflow feeds int8, uint8, int16 or float32 inputs")
    lo, hi, dtype = _RANGES[tensor.dtype]
    q = tensor.quantization
    v = x.astype(np.float64) / q.scale
    # TFLite rounds half away from zero (std::round), not half to even as np.round does.
    rounded = np.sign(v) * np.floor(np.abs(v) + 0.5)
    return np.clip(rounded + q.zero_point, lo, hi).astype(dtype)


def dequantize(q: np.ndarray, tensor: Tensor) -> np.ndarray:
    if tensor.quantization is None or tensor.dtype in ("FLOAT32", "FLOAT16"):
        return q.astype(np.float32)
    qp = tensor.quantization
    if qp.per_channel:
        shape = [1] * q.ndim
        shape[qp.axis] = -1
        scales = np.asarray(qp.scales, np.float32).reshape(shape)
        zps = np.asarray(qp.zero_points, np.float32).reshape(shape)
        return ((q.astype(np.float32) - zps) * scales).astype(np.float32)
    return ((q.astype(np.float32) - qp.zero_point) * qp.scale).astype(np.float32)
