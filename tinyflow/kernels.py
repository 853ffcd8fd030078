"""What each TFLM kernel allocates in the arena, in order: builtin params, Init, Prepare.

The reference kernels of tflite-micro (90b983c; the pinned wheel) were read and their allocator calls
traced on the wheel with gdb; these functions reproduce the traces event for event. Events:

- ``("T", "in"|"out", k)``: a temporary TfLiteTensor for input/output k, plus its quantization struct
  and zero-point array when the tensor is quantized (they live until the end of the op's Prepare);
- ``("P", n)``: a persistent (tail) buffer of n bytes, 16-aligned;
- ``("S", n)``: a scratch-buffer request: n bytes planned in the head, live only during this op;
- ``("TB", n, align)``: a raw temporary buffer.

``kernel_libraries`` adds what ESP-NN and CMSIS-NN kernels request on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .graph import Operator, Tensor
from .tflm_abi import Abi

Event = tuple


@dataclass(frozen=True)
class OpView:
    """An operator with its tensors resolved, as a kernel sees it in Prepare."""

    op: Operator
    ins: tuple[Tensor | None, ...]
    outs: tuple[Tensor, ...]
    abi: Abi

    @property
    def name(self) -> str:
        return self.op.name

    @property
    def opts(self) -> dict[str, Any]:
        return self.op.options

    def inp(self, k: int) -> Tensor | None:
        return self.ins[k] if k < len(self.ins) else None


class UnsupportedOp(Exception):
    """The planner has no allocation model for this operator."""


# Parse() allocates the op's builtin params struct: (sizeof, alignof) on the wheel (x86-64); the 32-bit
# build only differs where noted in _BUILTIN_MCU32. Ops missing here allocate nothing in Parse.
_BUILTIN: dict[str, tuple[int, int]] = {
    "ADD": (8, 4), "SUB": (8, 4), "MUL": (4, 4), "DIV": (4, 4),
    "CONV_2D": (28, 4), "DEPTHWISE_CONV_2D": (28, 4), "TRANSPOSE_CONV": (20, 4),
    "AVERAGE_POOL_2D": (40, 4), "MAX_POOL_2D": (40, 4), "L2_POOL_2D": (40, 4),
    "RESHAPE": (36, 4), "SQUEEZE": (36, 4), "SOFTMAX": (4, 4), "CONCATENATION": (8, 4), "PACK": (8, 4),
    "UNPACK": (8, 4), "STRIDED_SLICE": (24, 4), "GATHER": (8, 4), "CAST": (8, 4), "SPLIT": (4, 4),
    "SPLIT_V": (4, 4), "SHAPE": (4, 4), "ARG_MAX": (4, 4), "ARG_MIN": (4, 4), "LEAKY_RELU": (4, 4),
    "L2_NORMALIZATION": (4, 4), "MIRROR_PAD": (4, 4), "SPACE_TO_DEPTH": (4, 4), "DEPTH_TO_SPACE": (4, 4),
    "MEAN": (1, 1), "SUM": (1, 1), "REDUCE_MAX": (1, 1), "REDUCE_MIN": (1, 1), "REDUCE_PROD": (1, 1),
    "REDUCE_ALL": (1, 1), "RESIZE_BILINEAR": (2, 1), "RESIZE_NEAREST_NEIGHBOR": (2, 1), "CUMSUM": (2, 1),
    "BATCH_MATMUL": (3, 1), "SVDF": (12, 4), "LSTM": (20, 4), "UNIDIRECTIONAL_SEQUENCE_LSTM": (16, 4),
    "IF": (8, 4), "WHILE": (8, 4), "CALL_ONCE": (4, 4), "VAR_HANDLE": (16, 8),
}
_BUILTIN_MCU32 = {"VAR_HANDLE": (8, 4)}

# Init's OpData: sizeof on the wheel (x86-64 with compression) and on a 32-bit MCU without compression.
_OPDATA: dict[str, tuple[int, int]] = {
    "CONV_2D": (80, 56), "DEPTHWISE_CONV_2D": (80, 56), "FULLY_CONNECTED": (72, 48),
    "TRANSPOSE_CONV": (88, 72), "CONCATENATION": (80, 24),
    "ADD": (60, 60), "SUB": (52, 52), "MUL": (36, 36), "SOFTMAX": (80, 56), "LOGISTIC": (16, 16),
    "TANH": (16, 16), "AVERAGE_POOL_2D": (32, 32), "MAX_POOL_2D": (32, 32), "MEAN": (44, 44), "SUM": (44, 44),
    "REDUCE_MAX": (44, 44), "REDUCE_MIN": (44, 44), "PAD": (56, 56), "PADV2": (56, 56), "QUANTIZE": (32, 32),
    "DEQUANTIZE": (32, 32), "HARD_SWISH": (20, 20), "LEAKY_RELU": (24, 24), "RELU": (28, 28), "RELU6": (8, 8),
    "PRELU": (28, 28), "STRIDED_SLICE": (84, 84), "L2_NORMALIZATION": (4, 4), "BATCH_MATMUL": (32, 16),
    "SQUARED_DIFFERENCE": (112, 112), "UNIDIRECTIONAL_SEQUENCE_LSTM": (688, 688), "ELU": (256, 256),
    "SVDF": (36, 36),
}


def builtin_data(name: str, abi: Abi) -> tuple[int, int] | None:
    if name == "FULLY_CONNECTED":
        return abi.fc_params
    if abi.pointer == 4 and name in _BUILTIN_MCU32:
        return _BUILTIN_MCU32[name]
    return _BUILTIN.get(name)


def init_events(v: OpView) -> list[Event]:
    sizes = _OPDATA.get(v.name)
    if sizes is None:
        return []
    return [("P", sizes[0] if v.abi.pointer == 8 else sizes[1])]


def _per_channel_arrays(channels: int) -> list[Event]:
    # per_channel_output_multiplier and per_channel_output_shift: one int32 per output channel each
    return [("P", 4 * channels), ("P", 4 * channels)]


def _conv(v: OpView) -> list[Event]:
    f = v.inp(1)
    channels = f.shape[3] if v.name == "DEPTHWISE_CONV_2D" else f.shape[0]
    events: list[Event] = [("T", "out", 0), ("T", "in", 0), ("T", "in", 1), *_per_channel_arrays(channels),
                           ("T", "in", 0), ("T", "in", 1)]
    if v.inp(2) is not None:
        events.append(("T", "in", 2))
    events.append(("T", "out", 0))
    if f.dtype == "INT4":
        events.append(("S", f.elements))  # unpacked int4 filter
    return events


def _fully_connected(v: OpView) -> list[Event]:
    f = v.inp(1)
    events: list[Event] = [("T", "in", 0), ("T", "in", 1)]
    if v.inp(2) is not None:
        events.append(("T", "in", 2))
    events.append(("T", "out", 0))
    if f.quantization is not None and f.channels > 1:
        events += _per_channel_arrays(len(f.quantization.scales))
    if f.dtype == "INT4":
        events.append(("S", f.elements))
    return events


def _unary(v: OpView) -> list[Event]:
    return [("T", "in", 0), ("T", "out", 0)]


def _binary(v: OpView) -> list[Event]:
    return [("T", "in", 0), ("T", "in", 1), ("T", "out", 0)]


def _softmax(v: OpView) -> list[Event]:
    events = _unary(v)
    if v.inp(0).dtype == "INT16":
        events += [("P", 1026), ("P", 1026)]  # exp and 1/(1+x) lookup tables, int16[513] each
    return events


def _concatenation(v: OpView) -> list[Event]:
    return [("T", "in", 0), ("T", "out", 0), *[("T", "in", k) for k in range(len(v.ins))]]


def _reduce(v: OpView) -> list[Event]:
    inp, axis, out = v.inp(0), v.inp(1), v.outs[0]
    events: list[Event] = [("T", "in", 0), ("T", "out", 0), ("T", "in", 1)]
    if v.name in ("MEAN", "SUM") and inp.dtype in ("INT8", "INT16"):
        events.append(("S", 4 * out.elements))  # int32 accumulators
    events += [("S", 4 * len(inp.shape)), ("S", 4 * axis.elements)]  # resolved axes, temporary index
    events += [("T", "in", 0), ("T", "in", 1), ("T", "out", 0)]
    return events


_PREPARE: dict[str, Callable[[OpView], list[Event]]] = {
    "CONV_2D": _conv,
    "DEPTHWISE_CONV_2D": _conv,
    "FULLY_CONNECTED": _fully_connected,
    "AVERAGE_POOL_2D": _unary,
    "MAX_POOL_2D": _unary,
    "RESHAPE": _unary,
    "SOFTMAX": _softmax,
    "ADD": _binary,
    "CONCATENATION": _concatenation,
    "MEAN": _reduce,
    "SUM": _reduce,
}


def supported(name: str) -> bool:
    return name in _PREPARE


def prepare_events(v: OpView) -> list[Event]:
    fn = _PREPARE.get(v.name)
    if fn is None:
        raise UnsupportedOp(v.name)
    return fn(v)
