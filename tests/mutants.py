"""Corrupt and hostile variants of a valid ``.tflite``, generated from its bytes (no files needed).

Two kinds: structural mutants edit one field of the flatbuffer through the schema's object API (an index
out of range, an unknown type, an opcode swapped for another op, a bad offline plan...), the way a
hand-edited or damaged file differs from the converter's; byte mutants flip random bytes (seeded).
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from typing import Any

from tinyflow.graph import pack_model as pack
from tinyflow.graph import tflite_schema
from tinyflow.graph import unpack_model as unpack

Mutation = Callable[[Any], None]

# Ops an opcode is swapped for: ones tinyflow's kernel models and hazard rules read inputs of.
SWAP_OPS = ("MEAN", "SOFTMAX", "ADD", "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE",
            "CONCATENATION", "PAD", "STRIDED_SLICE", "TRANSPOSE", "AVERAGE_POOL_2D", "MAX_POOL_2D", "MUL",
            "LOGISTIC", "TANH", "UNIDIRECTIONAL_SEQUENCE_LSTM", "SVDF", "TRANSPOSE_CONV", "BATCH_MATMUL",
            "GATHER", "SPLIT", "QUANTIZE", "DEQUANTIZE", "EXP", "SUM", "RESIZE_NEAREST_NEIGHBOR", "HARD_SWISH",
            "L2_NORMALIZATION", "ARG_MAX", "WHILE", "IF", "CALL_ONCE", "VAR_HANDLE", "READ_VARIABLE")


def _offline_plan(offsets: list[int], n: int | None = None) -> bytes:
    return struct.pack(f"<3i{len(offsets)}i", 1, 1, len(offsets) if n is None else n, *offsets)


def _with_metadata(model: Any, name: bytes, payload: bytes, buffer: int | None = None) -> None:
    s = tflite_schema()
    buf = s.BufferT()
    buf.data = list(payload)
    model.buffers.append(buf)
    meta = s.MetadataT()
    meta.name = name
    meta.buffer = len(model.buffers) - 1 if buffer is None else buffer
    model.metadata = [*(model.metadata or []), meta]


def structural_mutations(data: bytes, every_swap: bool = False) -> Iterator[tuple[str, Mutation]]:
    """``(label, mutate)`` pairs; ``mutate`` edits a fresh ``ModelT`` of ``data`` in place. Each op of
    ``SWAP_OPS`` replaces one op of the model in turn (``every_swap``: replaces each op)."""
    s = tflite_schema()
    base = unpack(data)
    sg = base.subgraphs[0]
    n_t, n_ops, n_buf = len(sg.tensors), len(sg.operators), len(base.buffers)
    const = next(i for i, t in enumerate(sg.tensors) if t.buffer and base.buffers[t.buffer].data is not None)
    act = sg.outputs[0]

    def op_field(o: int, field: str, value: Any) -> Mutation:
        return lambda m: setattr(m.subgraphs[0].operators[o], field, value)

    def tensor_field(t: int, field: str, value: Any) -> Mutation:
        return lambda m: setattr(m.subgraphs[0].tensors[t], field, value)

    yield "schema version 2", lambda m: setattr(m, "version", 2)
    yield "buffer index past the end", tensor_field(const, "buffer", n_buf + 5)
    yield "buffer index 2^32-1", tensor_field(act, "buffer", (1 << 32) - 1)
    yield "unknown tensor type", tensor_field(act, "type", 99)
    yield "constant shape larger than its data", tensor_field(const, "shape", [*sg.tensors[const].shape, 7])
    yield "negative dimension", tensor_field(act, "shape", [1, -4])
    yield "huge dimension", tensor_field(act, "shape", [1, 1 << 30, 1 << 10])
    yield "activation shape changed", tensor_field(act, "shape", [1, 3, 3])
    yield "subgraph input out of range", lambda m: setattr(m.subgraphs[0], "inputs", [n_t + 1])
    yield "subgraph output -1", lambda m: setattr(m.subgraphs[0], "outputs", [-1])
    yield "no subgraph outputs", lambda m: setattr(m.subgraphs[0], "outputs", [])
    yield "opcode index out of range", op_field(0, "opcodeIndex", 99)
    yield "op output index -2", op_field(n_ops - 1, "outputs", [-2])
    yield "op input past the end", op_field(0, "inputs", [n_t + 3])
    yield "op with no inputs", op_field(0, "inputs", [])
    yield "op with no outputs", op_field(n_ops - 1, "outputs", [])
    yield "op intermediate past the end", op_field(0, "intermediates", [n_t])
    yield "op options dropped", lambda m: [setattr(op, "builtinOptions", None) for op in m.subgraphs[0].operators]
    yield "ops in reverse order", lambda m: m.subgraphs[0].operators.reverse()

    def quant(field: str, value: Any) -> Mutation:
        def mutate(m: Any) -> None:
            for t in m.subgraphs[0].tensors:
                if t.quantization is not None and t.quantization.scale is not None and len(t.quantization.scale):
                    setattr(t.quantization, field, value(t.quantization))
                    return
        return mutate

    yield "NaN quantization scale", quant("scale", lambda q: [float("nan")] * len(q.scale))
    yield "negative quantization scale", quant("scale", lambda q: [-1.0] * len(q.scale))
    yield "zero points of another length", quant("zeroPoint", lambda q: [0] * (len(q.scale) + 2))
    yield "quantized dimension 7", quant("quantizedDimension", lambda q: 7)
    yield "zero point out of int8 range", quant("zeroPoint", lambda q: [1000] * len(q.scale))

    def custom(code: bytes) -> Mutation:
        def mutate(m: Any) -> None:
            m.operatorCodes[0].builtinCode = m.operatorCodes[0].deprecatedBuiltinCode = s.BuiltinOperator.CUSTOM
            m.operatorCodes[0].customCode = code
        return mutate

    yield "custom op code not UTF-8", custom(b"\xff\xfe\x00bad")
    yield "custom op code with markup", custom(b"<script>alert(1)</script>\n#error x")
    yield "offline plan in a missing buffer", lambda m: _with_metadata(m, b"OfflineMemoryAllocation", b"", n_buf + 40)
    yield "offline plan truncated", lambda m: _with_metadata(m, b"OfflineMemoryAllocation", b"\x01\x00")
    yield "offline plan for other tensors", lambda m: _with_metadata(
        m, b"OfflineMemoryAllocation", _offline_plan([-1] * (n_t + 2)))
    yield "offline plan count lies", lambda m: _with_metadata(
        m, b"OfflineMemoryAllocation", _offline_plan([-1] * n_t, n=n_t + 1000))
    yield "offline plan negative offsets", lambda m: _with_metadata(
        m, b"OfflineMemoryAllocation", _offline_plan([-7] * n_t))
    yield "offline plan huge offsets", lambda m: _with_metadata(
        m, b"OfflineMemoryAllocation", _offline_plan([1 << 30] * n_t))
    yield "offline plan all at offset 0", lambda m: _with_metadata(
        m, b"OfflineMemoryAllocation", _offline_plan([0] * n_t))
    yield "metadata in a missing buffer", lambda m: _with_metadata(m, b"min_runtime_version", b"", n_buf + 9)
    for k, name in enumerate(SWAP_OPS * (n_ops if every_swap else 1)):
        o = k // len(SWAP_OPS) if every_swap else k % n_ops

        def swap(m: Any, o: int = o, code: int = getattr(s.BuiltinOperator, name)) -> None:
            oc = s.OperatorCodeT()
            oc.builtinCode = code
            oc.deprecatedBuiltinCode = min(code, 127)
            oc.version = 1
            m.operatorCodes.append(oc)
            m.subgraphs[0].operators[o].opcodeIndex = len(m.operatorCodes) - 1

        yield f"op {o} becomes {name}", swap


def mutants(data: bytes, byte_flips: int = 40, seed: int = 0, every_swap: bool = False) -> Iterator[tuple[str, bytes]]:
    """Every structural mutant of ``data`` and ``byte_flips`` random byte mutants, as ``(label, bytes)``."""
    for label, mutate in structural_mutations(data, every_swap):
        m = unpack(data)
        mutate(m)
        yield label, pack(m)
    rng = random.Random(seed)
    for i in range(byte_flips):
        b = bytearray(data)
        for _ in range(rng.choice((1, 2, 8))):
            b[rng.randrange(len(b))] = rng.randrange(256)
        yield f"random bytes #{i}", bytes(b)
    yield "truncated to half", data[: len(data) // 2]
    yield "truncated header", data[:7]
