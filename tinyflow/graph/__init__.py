"""The bottom of the pipeline: a ``.tflite`` flatbuffer read into a ``ModelGraph``, without TensorFlow.

Takes ``.tflite`` bytes; returns a ``ModelGraph`` (subgraphs, tensors, operators with MACs, weights and
live bytes) that every later stage reads, and quantizes/dequantizes arrays by a tensor's parameters.
"""

from .ops import resolver_method
from .quant import dequantize, quantize
from .reader import (
    ModelGraph,
    Operator,
    Quantization,
    Subgraph,
    Tensor,
    check_tflite_bytes,
    constant_array,
    read_graph,
    read_graph_file,
    read_tflite,
    tflite_schema,
)
from .validate import OFFLINE_PLAN_METADATA

__all__ = [
    "OFFLINE_PLAN_METADATA", "ModelGraph", "Operator", "Quantization", "Subgraph", "Tensor", "check_tflite_bytes",
    "constant_array",
    "dequantize", "quantize", "read_graph", "read_graph_file", "read_tflite", "resolver_method", "tflite_schema",
]
