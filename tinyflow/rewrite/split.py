"""Channel splitting: a convolution's filters in groups, each its own CONV_2D on the same input, joined by
CONCATENATION on the channel axis.

Each group keeps its slice of the filters, the bias and the per-channel quantization, and the output's
quantization, so every output value is computed exactly as before. What shrinks is whatever a kernel
allocates per op in proportion to the output channels: ESP-NN's ESP32-S3 convolution scratch holds the
reordered filters (a 1x1 conv over C channels asks for about C x Cout bytes).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from ..graph import builtin_name, tflite_schema
from .editor import Editor
from .patches import MAX_CONCAT_INPUTS, _split


def splittable(model: Any, i: int) -> int:
    """The op's output channel count when it can be split (a CONV_2D with constant weights), else 0."""
    s = tflite_schema()
    sg = model.subgraphs[0]
    op = sg.operators[i]
    if builtin_name(model.operatorCodes[op.opcodeIndex]) != "CONV_2D" or len(op.inputs) < 2 or len(op.outputs) != 1:
        return 0
    x, w, y = (sg.tensors[int(t)] for t in (op.inputs[0], op.inputs[1], op.outputs[0]))
    if len(w.shape) != 4 or len(y.shape) != 4 or len(x.shape) != 4 or model.buffers[w.buffer].data is None:
        return 0
    if int(w.shape[3]) != int(x.shape[3]):
        return 0  # a grouped conv: TFLM infers its groups from Cin / filter depth, which a slice of filters breaks
    if w.type != s.TensorType.INT8 or y.type != s.TensorType.INT8 or int(w.shape[0]) != int(y.shape[3]):
        return 0
    q = w.quantization
    if q is None or q.scale is None or (len(q.scale) > 1 and q.quantizedDimension != 0):
        return 0
    return int(w.shape[0])


def _sliced(ed: Editor, t: int, lo: int, hi: int, name: str) -> int:
    src = ed.sg.tensors[t]
    raw = np.asarray(ed.model.buffers[src.buffer].data, dtype=np.uint8)
    dtype = {ed.s.TensorType.INT8: np.int8, ed.s.TensorType.INT32: np.int32}[src.type]
    values = raw.view(dtype).reshape([int(d) for d in src.shape])[lo:hi]
    q = copy.deepcopy(src.quantization)
    if q is not None and q.scale is not None and len(q.scale) > 1:
        q.scale = np.asarray(q.scale)[lo:hi].copy()
        if q.zeroPoint is not None and len(q.zeroPoint) > 1:
            q.zeroPoint = np.asarray(q.zeroPoint)[lo:hi].copy()
    return ed.constant(values.copy(), name, q, src.type)


def split_channels(model: Any, splits: dict[int, int]) -> None:
    """Rewrite ``model`` (a ``ModelT``) in place: op ``i`` (original numbering) in ``splits[i]`` groups."""
    sg = model.subgraphs[0]
    ed = Editor(model)
    for i, op in enumerate(sg.operators):
        groups = splits.get(i, 1)
        cout = splittable(model, i) if groups > 1 else 0
        if groups <= 1:
            ed.ops.append(op)
            continue
        if not cout or groups > min(cout, MAX_CONCAT_INPUTS):
            raise ValueError(f"op {i} cannot be split into {groups} groups")
        ed.origin = getattr(op, "tinyflow_origin", i)
        x, w = int(op.inputs[0]), int(op.inputs[1])
        b = int(op.inputs[2]) if len(op.inputs) > 2 else -1
        y = int(op.outputs[0])
        shape = [int(d) for d in sg.tensors[y].shape]
        parts = []
        for g, (lo, hi) in enumerate(_split(cout, groups)):
            tag = f"tinyflow_split_{i}_{g}"
            wg = _sliced(ed, w, lo, hi, f"{tag}/filter")
            bg = _sliced(ed, b, lo, hi, f"{tag}/bias") if b >= 0 else -1
            out = ed.like(y, [*shape[:3], hi - lo], f"{tag}/out")
            ed.copy_op(op, [x, wg, bg] if len(op.inputs) > 2 else [x, wg], [out])
            parts.append(out)
        ed.concat(parts, 3, y)
    sg.operators = ed.ops
