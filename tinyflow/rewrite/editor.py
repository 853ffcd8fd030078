"""Adding tensors, constants and ops to an unpacked TFLite model (the schema's object API, ``ModelT``)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..graph import tflite_schema


class Editor:
    """One subgraph of a ``ModelT`` being rebuilt: new ops are appended to ``ops`` in execution order."""

    def __init__(self, model: Any, subgraph: int = 0):
        self.s = tflite_schema()
        self.model = model
        self.sg = model.subgraphs[subgraph]
        self.ops: list[Any] = []
        self.origin = -1  # the original op new glue ops (slices, pads, concatenations) are counted against

    def opcode(self, builtin: int) -> int:
        """The index of ``builtin``'s operator code, added when the model has none yet."""
        for i, code in enumerate(self.model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
                return i
        code = self.s.OperatorCodeT()
        code.builtinCode = builtin
        code.deprecatedBuiltinCode = min(builtin, 127)  # the int8 field saturates at PLACEHOLDER_FOR_GREATER_OP_CODES
        code.version = 1
        self.model.operatorCodes.append(code)
        return len(self.model.operatorCodes) - 1

    def like(self, tensor: int, shape: list[int], name: str, quantization: Any = "same") -> int:
        """A new activation tensor with ``tensor``'s type and quantization and another shape."""
        src = self.sg.tensors[tensor]
        t = self.s.TensorT()
        t.shape = np.array(shape, dtype=np.int32)
        t.shapeSignature = np.array(shape, dtype=np.int32)
        t.type = src.type
        t.buffer = 0  # no data: planned in the arena
        t.name = name
        t.quantization = copy.deepcopy(src.quantization) if quantization == "same" else quantization
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def constant(self, values: np.ndarray, name: str, quantization: Any = None, type_: int | None = None) -> int:
        buf = self.s.BufferT()
        buf.data = np.frombuffer(np.ascontiguousarray(values).tobytes(), dtype=np.uint8).copy()
        self.model.buffers.append(buf)
        t = self.s.TensorT()
        t.shape = np.array(values.shape, dtype=np.int32)
        t.type = type_ if type_ is not None else {np.dtype(np.int32): self.s.TensorType.INT32,
                                                   np.dtype(np.int8): self.s.TensorType.INT8}[values.dtype]
        t.buffer = len(self.model.buffers) - 1
        t.name = name
        t.quantization = quantization
        self.sg.tensors.append(t)
        return len(self.sg.tensors) - 1

    def op(self, builtin: int, inputs: list[int], outputs: list[int], options_type: int = 0,
           options: Any = None) -> Any:
        o = self.s.OperatorT()
        o.opcodeIndex = self.opcode(builtin)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        o.builtinOptionsType = options_type
        o.builtinOptions = options
        o.tinyflow_origin = self.origin
        self.ops.append(o)
        return o

    def copy_op(self, op: Any, inputs: list[int], outputs: list[int]) -> Any:
        o = copy.deepcopy(op)
        o.inputs = np.array(inputs, dtype=np.int32)
        o.outputs = np.array(outputs, dtype=np.int32)
        self.ops.append(o)
        return o

    def strided_slice(self, src: int, begin: list[int], end: list[int], name: str) -> int:
        shape = [e - b for b, e in zip(begin, end, strict=True)]
        out = self.like(src, shape, name)
        ints = np.int32
        b = self.constant(np.array(begin, dtype=ints), f"{name}/begin")
        e = self.constant(np.array(end, dtype=ints), f"{name}/end")
        st = self.constant(np.ones(len(begin), dtype=ints), f"{name}/strides")
        self.op(self.s.BuiltinOperator.STRIDED_SLICE, [src, b, e, st], [out],
                self.s.BuiltinOptions.StridedSliceOptions, self.s.StridedSliceOptionsT())
        return out

    def pad(self, src: int, pads: list[tuple[int, int]], name: str) -> int:
        """PAD without a constant: TFLM fills with the output zero point, the value a conv's implicit
        padding stands for (real 0), so the padded patch computes what the SAME-padded op computes."""
        shape = [int(d) + a + b for d, (a, b) in zip(self.sg.tensors[src].shape, pads, strict=True)]
        out = self.like(src, shape, name)
        p = self.constant(np.array(pads, dtype=np.int32), f"{name}/paddings")
        self.op(self.s.BuiltinOperator.PAD, [src, p], [out], self.s.BuiltinOptions.PadOptions, self.s.PadOptionsT())
        return out

    def concat(self, parts: list[int], axis: int, out: int) -> None:
        opts = self.s.ConcatenationOptionsT()
        opts.axis = axis
        self.op(self.s.BuiltinOperator.CONCATENATION, parts, [out], self.s.BuiltinOptions.ConcatenationOptions, opts)


def compact(model: Any) -> None:
    """Drop the main subgraph's tensors no op or subgraph I/O uses any more, and every buffer no tensor or
    metadata uses: a rewritten op's old weights would otherwise stay in flash, and each unused tensor costs
    TFLM an eval tensor in the persistent arena. An offline memory plan, counted per tensor, is dropped."""
    from ..graph import OFFLINE_PLAN_METADATA, metadata_name

    sg = model.subgraphs[0]
    used = {int(t) for op in sg.operators for t in (*op.inputs, *op.outputs, *(op.intermediates
                                                                               if op.intermediates is not None
                                                                               else ())) if t >= 0}
    used |= {int(t) for t in sg.inputs} | {int(t) for t in sg.outputs}
    keep = sorted(used)
    remap = {old: new for new, old in enumerate(keep)}
    sg.tensors = [sg.tensors[i] for i in keep]

    def m(arr: Any) -> Any:
        return None if arr is None else np.array([remap[int(t)] if t >= 0 else int(t) for t in arr], dtype=np.int32)

    for op in sg.operators:
        op.inputs, op.outputs = m(op.inputs), m(op.outputs)
        if op.intermediates is not None and len(op.intermediates):
            op.intermediates = m(op.intermediates)
    sg.inputs, sg.outputs = m(sg.inputs), m(sg.outputs)
    for sig in model.signatureDefs or []:
        if sig.subgraphIndex == 0:
            for tm in [*(sig.inputs or []), *(sig.outputs or [])]:
                tm.tensorIndex = remap[int(tm.tensorIndex)]

    model.metadata = [md for md in (model.metadata or []) if metadata_name(md) != OFFLINE_PLAN_METADATA] or None
    live = {0} | {t.buffer for g in model.subgraphs for t in g.tensors} | {md.buffer for md in model.metadata or []}
    bkeep = sorted(live)
    bmap = {old: new for new, old in enumerate(bkeep)}
    model.buffers = [model.buffers[i] for i in bkeep]
    for g in model.subgraphs:
        for t in g.tensors:
            t.buffer = bmap[t.buffer]
    for md in model.metadata or []:
        md.buffer = bmap[md.buffer]
