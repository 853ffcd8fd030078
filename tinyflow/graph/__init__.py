"""The bottom of the pipeline: a ``.tflite`` flatbuffer read into a ``ModelGraph``, without TensorFlow.

Takes ``.tflite`` bytes; returns a ``ModelGraph`` (subgraphs, tensors, operators with MACs, weights and
live bytes) that every later stage reads, and quantizes/dequantizes arrays by a tensor's parameters.
"""

from .flatbuf import align_buffers, buffer_misalignment, metadata_name
from .flatbuf import pack as pack_model
from .flatbuf import rewrite as rewrite_flatbuffer
from .flatbuf import unpack as unpack_model
from .ops import resolver_method
from .quant import dequantize, numpy_dtype, quantize, random_values
from .reader import (
    ModelGraph,
    Operator,
    Quantization,
    Subgraph,
    Tensor,
    builtin_name,
    check_tflite_bytes,
    constant_array,
    graph_from_model,
    read_graph,
    read_graph_file,
    read_tflite,
    tflite_schema,
)
from .validate import OFFLINE_PLAN_METADATA

__all__ = [
    "OFFLINE_PLAN_METADATA",
    "ModelGraph",
    "Operator",
    "Quantization",
    "Subgraph",
    "Tensor",
    "align_buffers",
    "buffer_misalignment",
    "builtin_name",
    "check_tflite_bytes",
    "constant_array",
    "dequantize",
    "graph_from_model",
    "metadata_name",
    "numpy_dtype",
    "pack_model",
    "quantize",
    "random_values",
    "read_graph",
    "read_graph_file",
    "read_tflite",
    "resolver_method",
    "rewrite_flatbuffer",
    "tflite_schema",
    "unpack_model",
]
