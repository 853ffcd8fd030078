"""What each TFLM kernel allocates in the arena, in order: builtin params, Init, Prepare.

The reference kernels of tflite-micro (90b983c; the pinned wheel) were read and their allocator calls
traced on the wheel with gdb; these functions reproduce the traces event for event. Events:

- ``("T", "in"|"out", k)``: a temporary TfLiteTensor for input/output k, plus its quantization struct
  and zero-point array when the tensor is quantized (they live until the end of the op's Prepare);
- ``("P", n)``: a persistent (tail) buffer of n bytes, 16-aligned;
- ``("S", n)``: a scratch-buffer request: n bytes planned in the head, live only during this op;
- ``("TB", n, align)``: a raw temporary buffer.

Kernels also hand their temporaries back (DeallocateTempTfLiteTensor) before Prepare returns. That never
moves an allocator pointer, and every kernel modelled here requests its persistent buffers while the
temporaries it reads are still live, so the deallocations cannot change the outcome and are left out.

``kernel_libraries`` adds what ESP-NN and CMSIS-NN kernels request on top.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..graph import Operator, Tensor
from .tflm_abi import Abi

Event = tuple


@dataclass(frozen=True)
class OpView:
    """An operator with its tensors resolved, as a kernel sees it in Prepare."""

    op: Operator
    ins: tuple[Tensor | None, ...]
    outs: tuple[Tensor, ...]
    abi: Abi
    # ASSIGN_VARIABLE: the first assignment of a resource variable allocates its buffer in the tail
    allocates_resource: bool = False

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

# Init's OpData: sizeof on the wheel (x86-64 with compression) and on a 32-bit MCU without compression
# (int64 and double 8-aligned, as on Xtensa and ARM). Ops missing here allocate nothing in Init.
_OPDATA: dict[str, tuple[int, int]] = {
    "CONV_2D": (80, 56), "DEPTHWISE_CONV_2D": (80, 56), "FULLY_CONNECTED": (72, 48),
    "TRANSPOSE_CONV": (88, 72), "CONCATENATION": (80, 24),
    "ADD": (60, 60), "SUB": (52, 52), "MUL": (36, 36), "DIV": (28, 28), "SOFTMAX": (80, 56),
    "LOGISTIC": (16, 16), "TANH": (16, 16), "AVERAGE_POOL_2D": (32, 32), "MAX_POOL_2D": (32, 32),
    "MEAN": (44, 44), "SUM": (44, 44), "REDUCE_MAX": (44, 44), "REDUCE_MIN": (44, 44), "PAD": (56, 56),
    "PADV2": (56, 56), "MIRROR_PAD": (20, 20), "QUANTIZE": (32, 32), "DEQUANTIZE": (32, 32),
    "HARD_SWISH": (20, 20), "LEAKY_RELU": (24, 24), "RELU": (28, 28), "RELU6": (8, 8), "PRELU": (28, 28),
    "ELU": (256, 256), "STRIDED_SLICE": (84, 84), "L2_NORMALIZATION": (4, 4), "BATCH_MATMUL": (32, 16),
    "SQUARED_DIFFERENCE": (112, 112), "ABS": (28, 28), "RSQRT": (28, 28), "SPACE_TO_BATCH_ND": (4, 4),
    "UNIDIRECTIONAL_SEQUENCE_LSTM": (688, 688), "SVDF": (36, 36),
    "EQUAL": (32, 32), "NOT_EQUAL": (32, 32), "GREATER": (32, 32), "GREATER_EQUAL": (32, 32),
    "LESS": (32, 32), "LESS_EQUAL": (32, 32),
    "IF": (8, 8), "WHILE": (8, 8), "CALL_ONCE": (8, 8), "VAR_HANDLE": (4, 4),
    "ASSIGN_VARIABLE": (4, 0),  # its OpData only exists in compression builds
}


def builtin_data(name: str, abi: Abi) -> tuple[int, int] | None:
    if name == "FULLY_CONNECTED":
        return abi.fc_params
    if abi.pointer == 4 and name in _BUILTIN_MCU32:
        return _BUILTIN_MCU32[name]
    return _BUILTIN.get(name)


def init_events(v: OpView) -> list[Event]:
    sizes = _OPDATA.get(v.name)
    size = 0 if sizes is None else sizes[0] if v.abi.pointer == 8 else sizes[1]
    return [("P", size)] if size else []


# ---- building blocks ------------------------------------------------------------------------------------


def _temps(*refs: tuple[str, int]) -> Callable[[OpView], list[Event]]:
    """A kernel whose Prepare only looks at these tensors (an omitted optional one gets no temporary)."""

    def events(v: OpView) -> list[Event]:
        return [("T", kind, k) for kind, k in refs if _exists(v, kind, k)]

    return events


def _exists(v: OpView, kind: str, k: int) -> bool:
    tensors = v.ins if kind == "in" else v.outs
    return k < len(tensors) and tensors[k] is not None


def _t(v: OpView, *refs: tuple[str, int]) -> list[Event]:
    return _temps(*refs)(v)


def _int_array(n: int) -> int:
    return 4 + 4 * n  # TfLiteIntArrayGetSizeInBytes


def _per_channel_arrays(channels: int) -> list[Event]:
    # per_channel_output_multiplier and per_channel_output_shift: one int32 per output channel each
    return [("P", 4 * channels), ("P", 4 * channels)]


IN0, IN1, IN2, IN3, OUT0 = ("in", 0), ("in", 1), ("in", 2), ("in", 3), ("out", 0)
_NOTHING = _temps()
_UNARY = _temps(IN0, OUT0)
_BINARY = _temps(IN0, IN1, OUT0)


# ---- kernels --------------------------------------------------------------------------------------------


def _conv(v: OpView) -> list[Event]:
    f = v.inp(1)
    depthwise = v.name == "DEPTHWISE_CONV_2D"
    events = _t(v, OUT0, IN0, IN1) + _per_channel_arrays(f.shape[3] if depthwise else f.shape[0])
    int4 = [("S", f.elements)] if f.dtype == "INT4" else []  # the unpacked int4 filter
    if depthwise:
        return events + int4 + _t(v, IN0, IN1, IN2, OUT0)
    return events + _t(v, IN0, IN1, IN2, OUT0) + int4


def _fc_quant_arrays(inp: Tensor, f: Tensor | None) -> list[Event]:
    if inp.dtype == "FLOAT32" or f is None or f.channels <= 1:
        return []
    return _per_channel_arrays(f.channels)


def _fully_connected(v: OpView) -> list[Event]:
    f = v.inp(1)
    events = _t(v, IN0, IN1, IN2, OUT0)
    if f.dtype == "INT4":
        events.append(("S", f.elements))
    return events + _fc_quant_arrays(v.inp(0), f)


def _transpose_conv(v: OpView) -> list[Event]:
    # inputs: output shape, filter, activation, optional bias
    f, x, out = v.inp(1), v.inp(2), v.outs[0]
    events = _t(v, OUT0, IN2, IN1) + _per_channel_arrays(f.shape[0])
    if x.dtype == "INT8":
        events.append(("S", 4 * out.elements))  # int32 accumulators
    elif x.dtype == "INT16":
        events.append(("S", 8 * out.elements))  # int64 accumulators
    if x.dtype != "FLOAT32":
        events += _t(v, IN2, IN1, IN3, OUT0)
        bias = v.inp(3)
        if x.dtype == "INT16" and bias is not None and bias.dtype == "INT16":
            events.append(("S", 8 * bias.elements))  # the bias widened to int64
    return events


def _reshape(v: OpView) -> list[Event]:
    events = _UNARY(v)
    if any(d < 0 for d in v.outs[0].shape):
        events.append(("P", _int_array(len(v.outs[0].shape))))  # writable dims for the resolved shape
    return events


def _assign_variable(v: OpView) -> list[Event]:
    events = _t(v, IN1)
    if v.allocates_resource:
        events.append(("P", v.inp(1).bytes))
    return events


def _l2_pool(v: OpView) -> list[Event]:
    return [*_t(v, OUT0, IN0), ("P", _int_array(len(v.outs[0].shape)))]


def _softmax(v: OpView) -> list[Event]:
    events = _UNARY(v)
    if v.inp(0).dtype == "INT16":
        events += [("P", 1026), ("P", 1026)]  # exp and 1/(1+x) lookup tables, int16[513] each
    return events


def _log_softmax(v: OpView) -> list[Event]:
    events = _UNARY(v)
    if v.inp(0).dtype == "INT8":
        events.append(("P", 40 if v.abi.pointer == 8 else 28))  # LogSoftmaxOpData, allocated in Prepare
    return events


def _tanh(v: OpView) -> list[Event]:
    return _t(v, IN0, IN0, OUT0)


def _pad(v: OpView) -> list[Event]:
    return _t(v, IN0, IN1, IN2, OUT0) if len(v.ins) == 3 else _t(v, IN0, IN1, OUT0)


def _mirror_pad(v: OpView) -> list[Event]:
    rank = len(v.inp(0).shape)
    return [*_t(v, IN0, IN1, OUT0), ("S", 4 * rank), ("S", 4 * rank)]


def _concatenation(v: OpView) -> list[Event]:
    return _t(v, IN0, OUT0) + [("T", "in", k) for k in range(len(v.ins)) if v.ins[k] is not None]


def _reduce_simple(v: OpView) -> list[Event]:
    # reduce_common's PrepareSimple looks at the output only for int8
    return _t(v, IN0, IN1, OUT0) if v.inp(0).dtype == "INT8" else _t(v, IN0, IN1)


def _reduce_scratch(v: OpView) -> list[Event]:
    return [("S", 4 * len(v.inp(0).shape)), ("S", 4 * v.inp(1).elements)]  # resolved axes, temporary index


def _mean_sum(v: OpView) -> list[Event]:
    inp, out = v.inp(0), v.outs[0]
    events = _t(v, IN0, OUT0, IN1)
    if inp.dtype in ("INT8", "INT16"):
        events.append(("S", 4 * out.elements))  # int32 accumulators
    return events + _reduce_scratch(v) + _reduce_simple(v)


def _reduce_min_max(v: OpView) -> list[Event]:
    return _reduce_simple(v) + _t(v, IN0, OUT0, IN1) + _reduce_scratch(v)


def _gather(v: OpView) -> list[Event]:
    return [*_t(v, IN0, IN1, OUT0), ("P", _int_array(len(v.outs[0].shape)))]


def _batch_matmul(v: OpView) -> list[Event]:
    lhs, rhs, out = v.inp(0), v.inp(1), v.outs[0]
    ptr8 = v.abi.pointer == 8
    events = _t(v, IN0, IN1, OUT0)
    if lhs.dtype in ("INT8", "INT16"):
        events.append(("P", 28))  # QuantizationOpDataBatchMatmul
    eval_tensor = 24 if ptr8 else 12
    # transposed copies of the operands: a TfLiteEvalTensor, its dims and its data
    if v.opts.get("adjX", False):
        events += [("P", eval_tensor), ("P", _int_array(len(lhs.shape))), ("P", lhs.bytes)]
    if not v.opts.get("adjY", False):
        events += [("P", eval_tensor), ("P", _int_array(len(rhs.shape))), ("P", rhs.bytes)]
    return [*events, ("P", _int_array(len(out.shape)))]  # the output's writable dims


def _dims_copy(v: OpView) -> list[Event]:
    return [*_UNARY(v), ("P", _int_array(len(v.outs[0].shape)))]


def _lstm(v: OpView) -> list[Event]:
    events = _t(v, *[("in", k) for k in range(24)], OUT0)
    x, hidden, cell = v.inp(0), v.inp(18), v.inp(19)
    if cell.dtype == "INT16":
        for wx, wh in ((2, 6), (1, 5), (3, 7), (4, 8)):  # forget, input, cell, output gates
            events += _fc_quant_arrays(x, v.inp(wx)) + _fc_quant_arrays(hidden, v.inp(wh))
    batch = x.shape[1] if v.opts.get("timeMajor", False) else x.shape[0]
    return events + [("S", batch * hidden.shape[1] * (cell.bytes // cell.elements))] * 4


def _svdf(v: OpView) -> list[Event]:
    x, features = v.inp(0), v.inp(1)
    batch, filters = x.shape[0], features.shape[0]
    units = filters // int(v.opts.get("rank", 1))
    events = _t(v, IN0, IN1, IN2, IN3, ("in", 4), OUT0)
    if x.dtype == "INT8":
        return [*events, ("S", 4 * batch * filters), ("S", 4 * batch * units)]
    return [*events, ("S", 4 * batch * filters)]


_PREPARE: dict[str, Callable[[OpView], list[Event]]] = {
    "CONV_2D": _conv, "DEPTHWISE_CONV_2D": _conv, "FULLY_CONNECTED": _fully_connected,
    "TRANSPOSE_CONV": _transpose_conv,
    "AVERAGE_POOL_2D": _UNARY, "MAX_POOL_2D": _UNARY, "L2_POOL_2D": _l2_pool,
    "ADD": _BINARY, "SUB": _BINARY, "MUL": _BINARY, "DIV": _BINARY, "SQUARED_DIFFERENCE": _BINARY,
    "MAXIMUM": _NOTHING, "MINIMUM": _NOTHING,
    "SOFTMAX": _softmax, "LOG_SOFTMAX": _log_softmax, "LOGISTIC": _UNARY, "TANH": _tanh,
    "RELU": _UNARY, "RELU6": _temps(IN0), "LEAKY_RELU": _UNARY, "PRELU": _BINARY, "HARD_SWISH": _UNARY,
    "ELU": _UNARY, "EXP": _UNARY, "QUANTIZE": _UNARY, "DEQUANTIZE": _UNARY, "CAST": _UNARY,
    "ABS": _UNARY, "SQRT": _UNARY, "RSQRT": _UNARY, "SQUARE": _UNARY, "CEIL": _UNARY, "ROUND": _UNARY,
    "NEG": _NOTHING, "FLOOR": _NOTHING, "L2_NORMALIZATION": _UNARY,
    "RESHAPE": _reshape, "SQUEEZE": _UNARY, "EXPAND_DIMS": _BINARY, "TRANSPOSE": _BINARY,
    "CONCATENATION": _concatenation, "PACK": _NOTHING, "UNPACK": _NOTHING,
    "SPLIT": _temps(IN0), "SPLIT_V": _temps(IN2), "SLICE": _temps(IN0, IN1, IN2, OUT0),
    "STRIDED_SLICE": _temps(IN0, IN1, IN2, IN3, OUT0),
    "PAD": _pad, "PADV2": _pad, "MIRROR_PAD": _mirror_pad,
    "MEAN": _mean_sum, "SUM": _mean_sum, "REDUCE_MAX": _reduce_min_max, "REDUCE_MIN": _reduce_min_max,
    "RESIZE_NEAREST_NEIGHBOR": _BINARY, "RESIZE_BILINEAR": _BINARY,
    "GATHER": _gather, "ARG_MAX": _NOTHING, "ARG_MIN": _NOTHING, "SHAPE": _NOTHING,
    "BATCH_MATMUL": _batch_matmul, "SPACE_TO_DEPTH": _dims_copy, "DEPTH_TO_SPACE": _dims_copy,
    "BATCH_TO_SPACE_ND": _UNARY, "SPACE_TO_BATCH_ND": _UNARY,
    "UNIDIRECTIONAL_SEQUENCE_LSTM": _lstm, "SVDF": _svdf,
    "EQUAL": _temps(IN0, IN1), "NOT_EQUAL": _temps(IN0, IN1), "GREATER": _temps(IN0, IN1),
    "GREATER_EQUAL": _temps(IN0, IN1), "LESS": _temps(IN0, IN1), "LESS_EQUAL": _temps(IN0, IN1),
    # control flow: the branch and loop subgraphs are prepared like the main one, in subgraph order
    "IF": _temps(IN0), "WHILE": _NOTHING, "CALL_ONCE": _NOTHING,
    # resource variables: VAR_HANDLE's output points at the kernel's OpData, not at the arena
    "VAR_HANDLE": _NOTHING, "READ_VARIABLE": _temps(IN0), "ASSIGN_VARIABLE": _assign_variable,
}


def supported(name: str) -> bool:
    return name in _PREPARE


def supported_ops() -> tuple[str, ...]:
    return tuple(sorted(_PREPARE))


def prepare_events(v: OpView) -> list[Event]:
    fn = _PREPARE.get(v.name)
    if fn is None:
        raise UnsupportedOp(v.name)
    return fn(v)
