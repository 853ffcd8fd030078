"""Inspect a ``.tflite`` without TensorFlow: read the flatbuffer into a ``ModelGraph`` with per-op costs."""

from __future__ import annotations

import functools
import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..paths import read_user_file
from .ops import resolver_method
from .validate import validate_model

TFLITE_IDENTIFIER = b"TFL3"


MAX_MODEL_BYTES = 256 * 1024 * 1024  # far above any microcontroller's flash; bounds a read of /dev/zero


def read_tflite(path: str | Path) -> bytes:
    data = read_user_file(path, "model file", MAX_MODEL_BYTES)
    check_tflite_bytes(data, path)
    return data


def check_tflite_bytes(data: bytes, path: str | Path) -> None:
    # A flatbuffer starts with the root table offset, then the 4-byte file identifier.
    if len(data) < 16 or data[4:8] != TFLITE_IDENTIFIER:
        raise InputError(f"{path}: not a TFLite flatbuffer (no 'TFL3' identifier); give a .tflite written by "
                         "the TFLite converter")


# Element size of each TensorType as TFLM lays it out (TfLiteTypeSizeOf).
_TYPE_BYTES = {
    "FLOAT32": 4, "FLOAT16": 2, "INT32": 4, "UINT8": 1, "INT64": 8, "BOOL": 1, "INT16": 2, "COMPLEX64": 8,
    "INT8": 1, "FLOAT64": 8, "COMPLEX128": 16, "UINT64": 8, "UINT32": 4, "UINT16": 2, "INT4": 1, "BFLOAT16": 2,
    "RESOURCE": 0, "VARIANT": 0, "STRING": 0,
}


def tflite_schema() -> Any:
    """TFLite's flatbuffer schema classes (the copy that ships with tflite-micro)."""
    from tflite_micro.tensorflow.lite.micro.python import schema_py_generated as schema

    return schema


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_") and isinstance(v, int)}


@functools.cache
def _op_names() -> dict[int, str]:
    return _enum_names(tflite_schema().BuiltinOperator)


def builtin_name(code: Any) -> str:
    """The builtin op name of an unpacked ``OperatorCodeT`` (the larger of its two code fields: the int8
    deprecated one saturates at 127 for newer ops); ``BUILTIN_<n>`` for a code this schema does not know."""
    n = max(code.builtinCode, code.deprecatedBuiltinCode)
    return _op_names().get(n, f"BUILTIN_{n}")


@dataclass(frozen=True)
class Quantization:
    scales: tuple[float, ...]
    zero_points: tuple[int, ...]
    axis: int

    @property
    def per_channel(self) -> bool:
        return len(self.scales) > 1

    @property
    def scale(self) -> float:
        return self.scales[0]

    @property
    def zero_point(self) -> int:
        return self.zero_points[0] if self.zero_points else 0


@dataclass(frozen=True)
class Tensor:
    index: int
    name: str
    dtype: str
    shape: tuple[int, ...]
    shape_signature: tuple[int, ...]
    bytes: int
    quantization: Quantization | None
    is_constant: bool  # its data is in the flatbuffer (weights, biases, shapes)
    is_variable: bool
    buffer: int = 0  # index into the model's buffers (0: no data)
    first_use: int | None = None  # op index that creates it (-1: a subgraph input); None for constants
    last_use: int | None = None  # last op index that reads it (len(ops): a subgraph output)

    @property
    def channels(self) -> int:
        """Quantization channels as TFLM counts them: it copies zero points only when scales and zero points
        are both present (TfLiteAffineQuantization + a zero-point TfLiteIntArray of this length)."""
        q = self.quantization
        return len(q.scales) if q is not None and q.scales and q.zero_points else 0

    @property
    def is_activation(self) -> bool:
        return not self.is_constant and not self.is_variable

    @property
    def elements(self) -> int:
        return math.prod(self.shape) if self.shape else 1


_FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64")


@dataclass(frozen=True)
class Operator:
    index: int
    name: str  # builtin name (CONV_2D) or CUSTOM:<custom_code>
    version: int
    inputs: tuple[int, ...]  # -1 marks an omitted optional input
    outputs: tuple[int, ...]
    intermediates: tuple[int, ...]
    options: dict[str, Any]
    macs: int = 0
    param_bytes: int = 0
    input_bytes: int = 0
    output_bytes: int = 0

    @property
    def supported_by_tflm(self) -> bool:
        return resolver_method(self.name) is not None


@dataclass(frozen=True)
class Subgraph:
    index: int
    name: str
    tensors: tuple[Tensor, ...]
    operators: tuple[Operator, ...]
    inputs: tuple[int, ...]
    outputs: tuple[int, ...]

    @property
    def used_tensors(self) -> frozenset[int]:
        """Tensors some op reads or writes, or the subgraph's I/O. An op's ``intermediates`` alone (LSTM's
        FLOAT32 shape-[0] ``input_to_input_intermediate`` and friends) have no buffer and are never read."""
        ids = {t for op in self.operators for t in (*op.inputs, *op.outputs) if t >= 0}
        return frozenset(ids | set(self.inputs) | set(self.outputs))


@dataclass(frozen=True)
class ModelGraph:
    size_bytes: int
    sha256: str
    description: str
    subgraphs: tuple[Subgraph, ...]
    metadata: dict[str, bytes] = field(default_factory=dict)
    source: str = "<model>"  # the file it was read from, for messages

    @property
    def main(self) -> Subgraph:
        return self.subgraphs[0]

    @property
    def op_names(self) -> tuple[str, ...]:
        """The distinct operators the model uses, in order of first use."""
        seen: dict[str, None] = {}
        for sg in self.subgraphs:
            for op in sg.operators:
                seen.setdefault(op.name)
        return tuple(seen)

    @property
    def total_macs(self) -> int:
        return sum(op.macs for sg in self.subgraphs for op in sg.operators)

    @property
    def param_bytes(self) -> int:
        return sum(t.bytes for sg in self.subgraphs for t in sg.tensors if t.is_constant)

    @property
    def unsupported_ops(self) -> list[tuple[int, str]]:
        return [(op.index, op.name) for sg in self.subgraphs for op in sg.operators if not op.supported_by_tflm]

    @property
    def is_quantized(self) -> bool:
        """No float activations inside the model: what TFLM's int8 kernels (and ESP-NN) need."""
        return not self.float_activations()

    def float_activations(self) -> list[Tensor]:
        """Float activations inside the model (a layer TFLite has no int8 kernel for, or weights the
        converter kept float behind a DEQUANTIZE): TFLM runs those ops with float reference kernels. Float
        model inputs and outputs met only by QUANTIZE / DEQUANTIZE at the edges are not counted: the body is
        int8. Neither are tensors no op reads or writes (an LSTM's empty ``intermediates``)."""
        sg = self.main
        edges = {t for op in sg.operators if op.name == "QUANTIZE" for t in op.inputs if t in sg.inputs}
        edges -= {t for op in sg.operators if op.name != "QUANTIZE" for t in op.inputs}
        edges |= {t for op in sg.operators if op.name == "DEQUANTIZE" for t in op.outputs if t in sg.outputs}
        out = []
        for s in self.subgraphs:
            used = s.used_tensors
            out += [t for t in s.tensors if t.is_activation and t.dtype in _FLOAT_TYPES and t.index in used
                    and not (s is sg and t.index in edges)]
        return out

    def live_bytes(self) -> list[int]:
        """Activation bytes alive while each op of the main subgraph runs (its inputs and outputs included)."""
        sg = self.main
        live = [0] * len(sg.operators)
        for t in sg.tensors:
            if t.is_activation and t.first_use is not None and t.bytes:
                for i in range(max(0, t.first_use), min(len(live) - 1, t.last_use) + 1):
                    live[i] += t.bytes
        return live

    def input_tensors(self) -> list[Tensor]:
        return [self.main.tensors[i] for i in self.main.inputs]

    def output_tensors(self) -> list[Tensor]:
        return [self.main.tensors[i] for i in self.main.outputs]


def _quantization(q: Any) -> Quantization | None:
    if q is None or q.scale is None or len(q.scale) == 0:
        return None
    zps = q.zeroPoint if q.zeroPoint is not None else []
    return Quantization(tuple(float(s) for s in q.scale), tuple(int(z) for z in zps), int(q.quantizedDimension))


def _options(op: Any) -> dict[str, Any]:
    opts = op.builtinOptions
    if opts is None:
        return {}
    out = {}
    for k, v in vars(opts).items():
        if isinstance(v, bool | int | float | str):
            out[k] = v
        elif isinstance(v, list | np.ndarray) and len(v) <= 16:
            out[k] = [int(x) for x in v]
    return out


# Ops that take constants but multiply nothing by a matrix: elementwise, indexing, layout.
_NOT_MATMUL = frozenset({
    "ADD", "SUB", "MUL", "DIV", "MAXIMUM", "MINIMUM", "SQUARED_DIFFERENCE", "SELECT", "SELECT_V2", "GATHER",
    "GATHER_ND", "EMBEDDING_LOOKUP", "CONCATENATION", "PACK", "RESHAPE", "PAD", "PADV2", "MIRROR_PAD", "TILE",
    "STRIDED_SLICE", "SLICE", "TRANSPOSE", "BROADCAST_TO", "WHERE", "SCATTER_ND", "PRELU", "FLOOR_DIV", "FLOOR_MOD",
    "POW", "EQUAL", "NOT_EQUAL", "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "LOGICAL_AND", "LOGICAL_OR",
})


def _macs(name: str, ins: list[Tensor | None], outs: list[Tensor]) -> int:
    """Multiply-accumulates of the ops that do them; elementwise ops and pooling count 0."""
    if not outs or not ins or ins[0] is None:
        return 0
    out = outs[0]
    if name in ("UNIDIRECTIONAL_SEQUENCE_LSTM", "BIDIRECTIONAL_SEQUENCE_LSTM", "LSTM"):
        return _lstm_macs(name, ins)
    if name == "SVDF":  # input [B, I], weights_feature [F, I], weights_time [F, memory]
        wf, wt = (ins[1], ins[2]) if len(ins) > 2 else (None, None)
        batch = ins[0].shape[0] if ins[0].shape else 1
        return batch * ((wf.elements if wf is not None else 0) + (wt.elements if wt is not None else 0))
    w = ins[1] if len(ins) > 1 else None
    if w is None or not w.shape:
        return 0
    if name == "CONV_2D":  # filter [OC, KH, KW, IC/groups]
        return out.elements * w.shape[1] * w.shape[2] * w.shape[3]
    if name == "DEPTHWISE_CONV_2D":  # filter [1, KH, KW, OC]
        return out.elements * w.shape[1] * w.shape[2]
    if name == "FULLY_CONNECTED":  # weights [units, depth]
        return out.elements * w.shape[-1]
    if name == "TRANSPOSE_CONV":  # inputs: output_shape, filter [OC, KH, KW, IC], input
        x = ins[2] if len(ins) > 2 else None
        f = ins[1]
        return x.elements * f.shape[0] * f.shape[1] * f.shape[2] if x is not None and f is not None else 0
    if name == "BATCH_MATMUL":
        return out.elements * (ins[0].shape[-1] if ins[0].shape else 1)
    if name == "CONV_3D":
        return out.elements * math.prod(w.shape[:-1])
    # Any other op with a weight matrix (an estimate, so that the latency estimate is not zero): each output
    # position multiplies its input by the constant's rows.
    weights = [x for x in ins[1:] if x is not None and x.is_constant and len(x.shape) >= 2]
    if weights and out.shape and name not in _NOT_MATMUL:
        return max(1, out.elements // max(1, out.shape[-1])) * sum(x.elements for x in weights)
    return 0


def _lstm_macs(name: str, ins: list[Tensor | None]) -> int:
    """Per time step and batch row: the input-to-gate, recurrent and projection matrices (and peepholes),
    each multiplied once. Inputs 1-8 are the gate matrices (-1 for CIFG's absent input gate), 9-11 the
    peepholes, 16 the projection (TFLite's lstm_shared.h; the bidirectional op's backward cell is 17 further)."""
    x = ins[0]
    assert x is not None
    n_input = x.shape[-1] if x.shape else 1
    rows = x.elements // max(1, n_input)  # time steps x batch
    per_cell = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 16]
    picks = per_cell + ([17 + i for i in per_cell] if name == "BIDIRECTIONAL_SEQUENCE_LSTM" else [])
    return rows * sum(ins[i].elements for i in picks if i < len(ins) and ins[i] is not None)


def _lifetimes(n_ops: int, ops: list[Any], sg_inputs: list[int], sg_outputs: list[int]) -> dict[int, list[int]]:
    life: dict[int, list[int]] = {t: [-1, -1] for t in sg_inputs}
    for i, op in enumerate(ops):
        for t in list(op.inputs if op.inputs is not None else []):
            if t >= 0 and t in life:
                life[t][1] = i
        for t in list(op.outputs if op.outputs is not None else []):
            life.setdefault(t, [i, i])
            life[t][1] = max(life[t][1], i)
    for t in sg_outputs:
        if t in life:
            life[t][1] = n_ops
    return life


def read_graph(data: bytes, source: str | Path = "<model>") -> ModelGraph:
    """Parse TFLite flatbuffer bytes; bad bytes are an ``InputError`` naming ``source``."""
    check_tflite_bytes(data, source)
    schema = tflite_schema()
    try:
        model = schema.ModelT.InitFromPackedBuf(bytearray(data), 0)
    except Exception as e:  # flatbuffers raises struct/index errors on truncated data
        raise InputError(f"{source}: the TFLite flatbuffer is truncated or corrupt ({type(e).__name__}); "
                         "re-export the model") from None
    return graph_from_model(model, len(data), hashlib.sha256(data).hexdigest(), source)


def graph_from_model(model: Any, size_bytes: int, sha256: str = "", source: str | Path = "<model>",
                     validate: bool = True) -> ModelGraph:
    """The graph of an unpacked model (the schema's ``ModelT``), validated as ``read_graph`` validates bytes:
    lets a rewrite be planned without packing it (``validate=False`` for a search's own candidates, whose
    chosen one is read back from its bytes, validated)."""
    schema = tflite_schema()
    if not model.subgraphs:
        raise InputError(f"{source}: the model has no subgraphs; re-export it")

    type_names = _enum_names(schema.TensorType)
    op_names = _op_names()
    if validate:
        type_bytes = {code: _TYPE_BYTES.get(name, 0) for code, name in type_names.items()}
        validate_model(model, size_bytes, type_bytes, op_names, source)
    buffers = model.buffers or []

    def has_data(buffer_index: int) -> bool:
        if buffer_index <= 0 or buffer_index >= len(buffers):
            return False
        b = buffers[buffer_index]
        # Models over 2 GB keep data outside the flatbuffer (offset/size); offset 1 is a placeholder.
        return (b.data is not None and len(b.data) > 0) or (getattr(b, "offset", 0) > 1 and b.size > 0)

    def op_name(opcode_index: int) -> str:
        if opcode_index >= len(model.operatorCodes or []):
            raise InputError(f"{source}: an operator refers to opcode {opcode_index}, which does not exist")
        oc = model.operatorCodes[opcode_index]
        name = builtin_name(oc)
        if name == "CUSTOM":
            # No TFLM resolver has a custom op, so its name is only ever shown: never fail on its bytes.
            custom = oc.customCode.decode(errors="replace") if isinstance(oc.customCode, bytes) else str(oc.customCode)
            return f"CUSTOM:{custom}"
        return name

    subgraphs = []
    try:
        for sg_index, sg in enumerate(model.subgraphs):
            raw_ops = sg.operators or []
            sg_inputs = [int(i) for i in (sg.inputs if sg.inputs is not None else [])]
            sg_outputs = [int(i) for i in (sg.outputs if sg.outputs is not None else [])]
            life = _lifetimes(len(raw_ops), raw_ops, sg_inputs, sg_outputs)
            tensors = []
            for i, t in enumerate(sg.tensors or []):
                dtype = type_names.get(t.type, f"TYPE_{t.type}")
                shape = tuple(int(d) for d in (t.shape if t.shape is not None else []))
                sig = tuple(int(d) for d in t.shapeSignature) if t.shapeSignature is not None else shape
                constant = has_data(t.buffer)
                first, last = life.get(i, (None, None))
                tensors.append(Tensor(
                    index=i,
                    name=t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name or ""),
                    dtype=dtype,
                    shape=shape,
                    shape_signature=sig,
                    bytes=(math.prod(shape) if shape else 1) * _TYPE_BYTES.get(dtype, 0),
                    quantization=_quantization(t.quantization),
                    is_constant=constant,
                    is_variable=bool(t.isVariable),
                    buffer=int(t.buffer),
                    first_use=None if constant else first,
                    last_use=None if constant else last,
                ))
            operators = []
            for i, op in enumerate(raw_ops):
                name = op_name(op.opcodeIndex)
                ins = [int(x) for x in (op.inputs if op.inputs is not None else [])]
                outs = [int(x) for x in (op.outputs if op.outputs is not None else [])]
                in_t = [tensors[x] if x >= 0 else None for x in ins]
                out_t = [tensors[x] for x in outs]
                operators.append(Operator(
                    index=i,
                    name=name,
                    version=max(1, model.operatorCodes[op.opcodeIndex].version),
                    inputs=tuple(ins),
                    outputs=tuple(outs),
                    intermediates=tuple(int(x) for x in (op.intermediates if op.intermediates is not None else [])),
                    options=_options(op),
                    macs=_macs(name, in_t, out_t),
                    param_bytes=sum(t.bytes for t in in_t if t is not None and t.is_constant),
                    input_bytes=sum(t.bytes for t in in_t if t is not None and not t.is_constant),
                    output_bytes=sum(t.bytes for t in out_t),
                ))
            sg_name = sg.name.decode(errors="replace") if isinstance(sg.name, bytes) else str(sg.name or "")
            subgraphs.append(Subgraph(sg_index, sg_name, tuple(tensors), tuple(operators), tuple(sg_inputs),
                                      tuple(sg_outputs)))
    except IndexError:  # validate_model checked every index; this is a shape an op's cost model did not expect
        raise InputError(f"{source}: corrupt model: an op's tensors do not have the ranks its kind needs; "
                         "re-export it with the TFLite converter") from None

    metadata = {}
    for m in model.metadata or []:
        if 0 <= m.buffer < len(buffers) and buffers[m.buffer].data is not None:
            key = m.name.decode(errors="replace") if isinstance(m.name, bytes) else str(m.name)
            metadata[key] = bytes(np.asarray(buffers[m.buffer].data, dtype=np.uint8))
    desc = model.description.decode(errors="replace") if isinstance(model.description, bytes) else ""
    return ModelGraph(size_bytes, sha256, desc, tuple(subgraphs), metadata, str(source))


def read_graph_file(path: str | Path) -> ModelGraph:
    return read_graph(read_tflite(path), path)


_NUMPY_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32, "INT64": np.int64,
                "FLOAT32": np.float32, "FLOAT16": np.float16, "BOOL": np.bool_}


def constant_array(data: bytes, tensor: Tensor) -> np.ndarray:
    """The values of a constant tensor (weights, bias), read from the flatbuffer ``data``."""
    if not tensor.is_constant:
        raise ValueError(f"tensor '{tensor.name}' has no data in the model")
    buf = tflite_schema().Model.GetRootAsModel(data, 0).Buffers(tensor.buffer)
    raw = buf.DataAsNumpy().tobytes()
    return np.frombuffer(raw, dtype=_NUMPY_TYPES[tensor.dtype]).reshape(tensor.shape)
