"""Structural checks of a ``.tflite`` before anything trusts it: indices in range, types known, data sized.

TFLM trusts the flatbuffer: a buffer index past the end, an output index of -2 or a constant shorter than
its shape reads out of bounds and crashes the interpreter (on a board: a reset loop at boot). The
converter never writes such a model, so any of these is a corrupt or hand-edited file, refused here with
the first problem found and where it is.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Any

from ..errors import InputError

SCHEMA_VERSION = 3  # TFLITE_SCHEMA_VERSION: the one TFLM reads
OFFLINE_PLAN_METADATA = "OfflineMemoryAllocation"
_MAX_TENSOR_BYTES = (1 << 31) - 1  # TFLM sizes tensors in int32 / size_t on a 32-bit MCU


def _ints(values: Any) -> list[int]:
    return [int(x) for x in (values if values is not None else [])]


def _name(raw: Any) -> str:
    return raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw or "")


def validate_model(model: Any, data_len: int, type_bytes: dict[int, int], op_names: dict[int, str],
                   source: str | Path) -> None:
    """``model``: the schema's object API ``ModelT``; ``type_bytes``: element size per TensorType code (0 for
    variable-size types); ``op_names``: BuiltinOperator names by code. Raises ``InputError`` naming
    ``source`` and the first inconsistency."""

    def bad(where: str, problem: str) -> InputError:
        return InputError(f"{source}: corrupt model: {where} {problem}; re-export it with the TFLite converter")

    if model.version != SCHEMA_VERSION:
        raise InputError(f"{source}: TFLite schema version {model.version}, but TFLM reads version "
                         f"{SCHEMA_VERSION}; re-export it with the TFLite converter")
    buffers = model.buffers or []
    opcodes = model.operatorCodes or []
    n_sub = len(model.subgraphs or [])
    main = model.subgraphs[0]
    for what in ("inputs", "outputs"):
        if not _ints(getattr(main, what)):
            raise InputError(f"{source}: the model's main subgraph has no {what}; a model to run needs at least one "
                             "input and one output: re-export it with the TFLite converter")
    for i, b in enumerate(buffers):
        offset, size = int(getattr(b, "offset", 0) or 0), int(getattr(b, "size", 0) or 0)
        if offset > 1 and offset + size > data_len:
            raise bad(f"buffer {i}", f"points past the end of the file ({offset} + {size} > {data_len} B)")

    def buffer_bytes(index: int) -> int | None:
        b = buffers[index]
        if b.data is not None and len(b.data):
            return len(b.data)
        offset = int(getattr(b, "offset", 0) or 0)
        return int(b.size) if offset > 1 and b.size else None

    for s, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        n = len(tensors)
        for i, t in enumerate(tensors):
            where = f"subgraph {s} tensor {i} ('{_name(t.name)}')"
            if t.type not in type_bytes:
                raise bad(where, f"has tensor type {t.type}, which TFLite does not define")
            shape = _ints(t.shape)
            if any(d < 0 for d in shape):
                raise bad(where, f"has a negative dimension in its shape {shape}")
            elements = math.prod(shape) if shape else 1
            if elements * max(1, type_bytes[t.type]) > _MAX_TENSOR_BYTES:
                raise bad(where, f"has shape {shape}, over 2 GiB")
            if not 0 <= t.buffer < max(1, len(buffers)):
                raise bad(where, f"names buffer {t.buffer}, but the model has {len(buffers)} buffers")
            stored = buffer_bytes(t.buffer) if buffers else None
            size = type_bytes[t.type]
            if stored is not None and size:
                want = {elements * size} | ({(elements + 1) // 2} if t.type == _INT4 else set())
                if stored not in want:
                    raise bad(where, f"has shape {shape} ({min(want):,} B of data) but its buffer holds {stored:,} B")
            _check_quantization(t, shape, where, bad)
        for name, ids, low in (("inputs", sg.inputs, 0), ("outputs", sg.outputs, 0)):
            for x in _ints(ids):
                if not low <= x < n:
                    raise bad(f"subgraph {s} {name}", f"name tensor {x}, but it has {n} tensors")
        for o, op in enumerate(sg.operators or []):
            where = f"subgraph {s} op {o}"
            if not 0 <= op.opcodeIndex < len(opcodes):
                raise bad(where, f"uses opcode {op.opcodeIndex}, but the model has {len(opcodes)}")
            for kind, ids, low in (("input", op.inputs, -1), ("output", op.outputs, 0),
                                   ("intermediate", op.intermediates, 0)):
                for x in _ints(ids):
                    if not low <= x < n:
                        raise bad(where, f"has {kind} tensor {x}, but the subgraph has {n} tensors")
            opts = op.builtinOptions
            for attr, value in (vars(opts).items() if opts is not None else ()):
                if attr.endswith("SubgraphIndex") and isinstance(value, int) and not 0 <= value < n_sub:
                    raise bad(where, f"calls subgraph {value}, but the model has {n_sub}")
    _check_op_shapes(model, op_names, bad)
    for sig in model.signatureDefs or []:
        if not 0 <= sig.subgraphIndex < n_sub:
            raise bad("a signature", f"names subgraph {sig.subgraphIndex}, but the model has {n_sub}")
    _check_metadata(model, buffers, bad)


_INT4 = 17  # TensorType.INT4: two values per byte


# TFLM's kernels for these trust the model's output shape: a smaller output than the input (or than the
# broadcast of two inputs) is written past its end, silently with a large arena and a crash with a tight one.
_UNARY = frozenset({
    "ABS", "CEIL", "COS", "DEQUANTIZE", "ELU", "EXP", "FLOOR", "GELU", "HARD_SWISH", "L2_NORMALIZATION",
    "LEAKY_RELU", "LOG", "LOGISTIC", "LOG_SOFTMAX", "LOGICAL_NOT", "NEG", "QUANTIZE", "RELU", "RELU6",
    "RELU_N1_TO_1", "RELU_0_TO_1", "ROUND", "RSQRT", "SIN", "SOFTMAX", "SQRT", "SQUARE", "TANH", "ZEROS_LIKE",
})
_BINARY = frozenset({
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "FLOOR_DIV", "FLOOR_MOD", "POW",
    "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR", "PRELU",
})


def _broadcast(a: list[int], b: list[int]) -> list[int] | None:
    out = []
    for x, y in zip(reversed([1] * (len(b) - len(a)) + a), reversed([1] * (len(a) - len(b)) + b), strict=True):
        if x != y and 1 not in (x, y):
            return None
        out.append(max(x, y) if 0 not in (x, y) else 0)
    return out[::-1]


# Image ops: NHWC in and out, and (pools, depthwise) the channels kept; the kernels index 4-D arrays.
_POOLS = frozenset({"AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D"})
_CONVS = frozenset({"CONV_2D", "DEPTHWISE_CONV_2D"})


def _check_image_op(name: str, shapes: list[list[int]], out: list[int]) -> str | None:
    x = shapes[0]
    if len(x) != 4 or len(out) != 4:
        return f"takes {x} to {out}; it needs 4-D (NHWC) input and output"
    if name in _POOLS and x[3] != out[3]:
        return f"takes {x} to {out}; a pool keeps the channel count"
    if name in _CONVS:
        if len(shapes) < 2 or len(shapes[1]) != 4:
            return "has no 4-D filter"
        f = shapes[1]
        channels = f[0] if name == "CONV_2D" else f[3]
        if channels != out[3] or (name == "CONV_2D" and (f[3] == 0 or x[3] % f[3])):
            return f"has filter {f} for input {x} and output {out}; their channels disagree"
    return None


def _check_op_shapes(model: Any, op_names: dict[int, str], bad: Any) -> None:
    opcodes = model.operatorCodes
    for s, sg in enumerate(model.subgraphs):
        tensors = sg.tensors or []
        for o, op in enumerate(sg.operators or []):
            oc = opcodes[op.opcodeIndex]
            name = op_names.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), "")
            ins, outs = [x for x in _ints(op.inputs) if x >= 0], _ints(op.outputs)
            if not ins or not outs:
                continue
            if name in _POOLS | _CONVS:
                problem = _check_image_op(name, [_ints(tensors[x].shape) for x in ins[:2]],
                                          _ints(tensors[outs[0]].shape))
                if problem:
                    raise bad(f"subgraph {s} op {o} ({name})", problem)
                continue
            if name not in _UNARY | _BINARY:
                continue
            shapes = [_ints(tensors[x].shape) for x in ins[: 1 if name in _UNARY else 2]]
            want = shapes[0] if len(shapes) == 1 else _broadcast(*shapes)
            got = _ints(tensors[outs[0]].shape)
            if want is None or math.prod(want) != math.prod(got):
                given = " and ".join(str(x) for x in shapes)
                raise bad(f"subgraph {s} op {o} ({name})", f"maps {given} to an output of shape {got}; an "
                          "elementwise op's output has its inputs' (broadcast) shape")


def _check_quantization(t: Any, shape: list[int], where: str, bad: Any) -> None:
    q = t.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return
    scales = [float(x) for x in q.scale]
    if not all(math.isfinite(x) and x >= 0 for x in scales):
        raise bad(where, "has a negative or non-finite quantization scale")
    zps = _ints(q.zeroPoint)
    if zps and len(zps) != len(scales):
        raise bad(where, f"has {len(scales)} quantization scales but {len(zps)} zero points")
    if len(scales) > 1:
        axis = int(q.quantizedDimension)
        # Older converters gave a conv's 1-D bias its filter's axis (3): TFLM never reads a bias's axis, and
        # its own person-detection model has such biases.
        legacy_bias = len(shape) == 1 and axis >= 1 and shape[0] == len(scales)
        if not legacy_bias and (not 0 <= axis < len(shape) or shape[axis] != len(scales)):
            raise bad(where, f"has {len(scales)} per-channel scales on axis {axis} of shape {shape}")


def _check_metadata(model: Any, buffers: list[Any], bad: Any) -> None:
    for m in model.metadata or []:
        name = _name(m.name)
        if not 0 <= m.buffer < len(buffers):
            raise bad(f"metadata '{name}'", f"names buffer {m.buffer}, but the model has {len(buffers)} buffers")
        if name != OFFLINE_PLAN_METADATA:
            continue
        raw = bytes(buffers[m.buffer].data if buffers[m.buffer].data is not None else b"")
        total = sum(len(sg.tensors or []) for sg in model.subgraphs)
        if len(raw) < 12:
            raise bad(f"metadata '{name}'", f"is {len(raw)} B, shorter than its 12-byte header")
        n = struct.unpack_from("<i", raw, 8)[0]
        if n != total or len(raw) != 12 + 4 * n:
            raise bad(f"metadata '{name}'", f"holds {len(raw)} B for {n} offsets, but the model has {total} tensors")
        offsets = struct.unpack_from(f"<{n}i", raw, 12)
        if any(x < -1 for x in offsets):
            raise bad(f"metadata '{name}'", "has a negative arena offset (only -1, 'plan online', is allowed)")
