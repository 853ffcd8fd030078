"""Patch-based inference (MCUNetV2): run the first ops of a CNN on spatial patches, one patch at a time.

The stage is ``ops`` consecutive ops of the main subgraph from op ``start``, each a CONV_2D,
ADD (a residual inside the stage) or PAD, on int8 NHWC tensors of batch 1, fed by one tensor from outside
(the stage input) and read outside only through the last op's output (the stage output). The stage output is
cut into a ``rows x cols`` grid; for each cell the receptive field is walked back through the stage, and
the cell is computed by STRIDED_SLICE (the cell's input with its halo), PAD (only where the cell touches the
image border, with the zero point: what TFLM's implicit SAME padding stands for), and copies of the stage's
ops with VALID padding sharing the original weights. CONCATENATION assembles the cells (along the width per
row of cells, then along the height). Every output pixel is the same integer sum over the same inputs as in
the original op, so the outputs are bit-identical; the price is the recomputed halo and more ops.

Pools are patched only where they need no padding at all: TFLM's SAME max/average pool skips padded
positions (an average divides by the valid count), which an explicit PAD cannot reproduce.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..graph import builtin_name, tflite_schema
from .editor import Editor

PATCHABLE = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "ADD", "PAD")

MAX_CONCAT_INPUTS = 10  # TFLM's CONCATENATION refuses more (kernels/concatenation.cc, kMaxInputNum)

Region = tuple[int, int, int, int]  # rows [r0, r1), cols [c0, c1)


@dataclass(frozen=True)
class Window:
    """One spatial dimension of an op: output ``o`` reads virtual input ``o*stride - before`` onwards."""

    size: int = 1
    stride: int = 1
    dilation: int = 1
    before: int = 0

    def need(self, o0: int, o1: int) -> tuple[int, int]:
        """The virtual input range [start, stop) that outputs [o0, o1) read (may reach into the padding)."""
        last = (o1 - 1) * self.stride - self.before + (self.size - 1) * self.dilation
        return o0 * self.stride - self.before, last + 1


@dataclass(frozen=True)
class StageOp:
    index: int
    kind: str
    data_inputs: tuple[int, ...]  # tensor indices of the activations read (ADD: two)
    output: int
    rows: Window
    cols: Window


@dataclass(frozen=True)
class PatchPlan:
    """What the patch rewrite will do: ``ops`` ops from op ``start`` on a ``rows x cols`` grid."""

    ops: int
    rows: int
    cols: int
    # Strided convs read stride-1 more rows and columns than VALID needs (VALID ignores them): then ESP-NN's
    # ESP32-S3 kernels see no right/bottom padding and skip the padded copy of the input they make otherwise.
    stride_slack: bool = False
    start: int = 0  # the stage's first op: the first ops may be cheaper left whole (their input dies with them)

    @property
    def stop(self) -> int:
        return self.start + self.ops


@dataclass(frozen=True)
class PatchLayout:
    """The patches as computed: per cell, its region of the stage output and of the stage input (with halo)."""

    stage_input: int
    stage_output: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    output_regions: tuple[Region, ...]
    input_regions: tuple[Region, ...]  # clipped to the image; the rest of each cell's halo is padding


def _shape(sg: Any, t: int) -> list[int]:
    return [int(x) for x in sg.tensors[t].shape]


def _same_before(in_size: int, out_size: int, size: int, stride: int, dilation: int) -> int:
    # TFLM's ComputePaddingHeightWidth: the odd remainder goes after
    eff = (size - 1) * dilation + 1
    return max(0, (out_size - 1) * stride + eff - in_size) // 2


def _window(padding: int, in_size: int, out_size: int, size: int, stride: int, dilation: int) -> Window:
    same = padding == tflite_schema().Padding.SAME
    before = _same_before(in_size, out_size, size, stride, dilation) if same else 0
    return Window(size, stride, dilation, before)


def _constant(model: Any, sg: Any, t: int) -> np.ndarray | None:
    buf = model.buffers[sg.tensors[t].buffer]
    return None if buf.data is None or len(buf.data) == 0 else np.asarray(buf.data, dtype=np.uint8)


def stage_op(model: Any, sg: Any, i: int) -> StageOp | None:
    """The op as a patchable stage op, or None when patching cannot reproduce it exactly."""
    s = tflite_schema()
    op = sg.operators[i]
    kind = builtin_name(model.operatorCodes[op.opcodeIndex])
    arity = 1 if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D") else 2  # pools: data; convs: data, filter; ...
    if kind not in PATCHABLE or len(op.outputs) != 1 or len(op.inputs) < arity:
        return None
    x, y = int(op.inputs[0]), int(op.outputs[0])
    if x < 0 or _constant(model, sg, x) is not None:
        return None
    xs, ys = _shape(sg, x), _shape(sg, y)
    if len(xs) != 4 or len(ys) != 4 or xs[0] != 1 or ys[0] != 1:
        return None
    if sg.tensors[x].type != s.TensorType.INT8 or sg.tensors[y].type != s.TensorType.INT8:
        return None
    o = op.builtinOptions
    expected = {"CONV_2D": s.Conv2DOptionsT, "DEPTHWISE_CONV_2D": s.DepthwiseConv2DOptionsT,
                "AVERAGE_POOL_2D": s.Pool2DOptionsT, "MAX_POOL_2D": s.Pool2DOptionsT}.get(kind)
    if expected is not None and not isinstance(o, expected):
        return None  # options of another kind (a corrupt or hand-edited model): nothing to reproduce
    if kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        f = _shape(sg, int(op.inputs[1]))
        if len(f) != 4:
            return None
        rows = _window(o.padding, xs[1], ys[1], f[1], o.strideH, o.dilationHFactor)
        cols = _window(o.padding, xs[2], ys[2], f[2], o.strideW, o.dilationWFactor)
        return StageOp(i, kind, (x,), y, rows, cols)
    if kind in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        rows = _window(o.padding, xs[1], ys[1], o.filterHeight, o.strideH, 1)
        cols = _window(o.padding, xs[2], ys[2], o.filterWidth, o.strideW, 1)
        if rows.before or cols.before or rows.need(0, ys[1])[1] > xs[1] or cols.need(0, ys[2])[1] > xs[2]:
            return None  # a padded pool: TFLM skips padded positions, an explicit PAD would count them
        return StageOp(i, kind, (x,), y, rows, cols)
    if kind == "ADD":
        if len(op.inputs) != 2 or _shape(sg, int(op.inputs[1])) != xs or xs != ys:
            return None  # broadcasting adds are left alone
        if _constant(model, sg, int(op.inputs[1])) is not None:
            return None
        return StageOp(i, kind, (x, int(op.inputs[1])), y, Window(), Window())
    # PAD: only the spatial dims padded, by constants; the padded value is the zero point
    if len(op.inputs) != 2:
        return None
    raw = _constant(model, sg, int(op.inputs[1]))
    if raw is None or sg.tensors[int(op.inputs[1])].type != s.TensorType.INT32 or len(raw) != 32:
        return None
    pads = raw.view("<i4").reshape(4, 2)
    if pads[0].any() or pads[3].any():
        return None
    return StageOp(i, kind, (x,), y, Window(before=int(pads[1, 0])), Window(before=int(pads[2, 0])))


def stages(model: Any, start: int = 0) -> list[int]:
    """Every ``k`` for which ``k`` ops from op ``start`` of the main subgraph form a patchable stage."""
    sg = model.subgraphs[0]
    cuts: list[int] = []
    produced: set[int] = set()
    stage_input: int | None = None
    outputs = {int(t) for t in sg.outputs}
    inputs = {int(t) for t in sg.inputs}
    consumers: dict[int, list[int]] = {}
    for j, op in enumerate(sg.operators):
        for t in op.inputs:
            consumers.setdefault(int(t), []).append(j)
    for i in range(start, len(sg.operators)):
        so = stage_op(model, sg, i)
        if so is None:
            break
        for t in so.data_inputs:
            if t not in produced:
                if stage_input is None:
                    stage_input = t
                elif t != stage_input:
                    return cuts  # a second input from outside the stage
        produced.add(so.output)
        # a valid cut: nothing produced inside escapes but the last op's output
        stop = i + 1
        escaping = [t for t in produced if t != so.output
                    and (t in outputs or any(c >= stop for c in consumers.get(t, [])))]
        dead = [t for t in produced if t != so.output and not consumers.get(t)]
        if not escaping and not dead and so.output not in inputs:
            cuts.append(stop - start)
    return cuts


def _split(n: int, parts: int) -> list[tuple[int, int]]:
    edges = [round(i * n / parts) for i in range(parts + 1)]
    return list(itertools.pairwise(edges))


def _need(so: StageOp, o: Region, slack: bool) -> tuple[int, int, int, int]:
    """The virtual input region [a0, a1) x [b0, b1) an op reads for its output region ``o``."""
    a0, a1 = so.rows.need(o[0], o[1])
    b0, b1 = so.cols.need(o[2], o[3])
    if slack and so.kind in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        a1 += so.rows.stride - 1
        b1 += so.cols.stride - 1
    return a0, a1, b0, b1


def _regions(stage: list[StageOp], shapes: dict[int, list[int]], out: Region, slack: bool = False) -> dict[int, Region]:
    """Per tensor of the stage (and its input): the region of it one output cell needs, clipped to the tensor."""
    need: dict[int, Region] = {stage[-1].output: out}
    for so in reversed(stage):
        a0, a1, b0, b1 = _need(so, need[so.output], slack)
        for t in so.data_inputs:
            h, w = shapes[t][1], shapes[t][2]
            clipped = (max(a0, 0), min(a1, h), max(b0, 0), min(b1, w))
            if clipped[0] >= clipped[1] or clipped[2] >= clipped[3]:
                # the cell lies wholly in a PAD's padding: no tensor can hold an empty region
                raise ValueError("a patch cell reads nothing of a padded tensor: use a coarser grid")
            old = need.get(t)
            need[t] = clipped if old is None else (min(old[0], clipped[0]), max(old[1], clipped[1]),
                                                   min(old[2], clipped[2]), max(old[3], clipped[3]))
    return need


def _checked_stage(model: Any, plan: PatchPlan) -> tuple[list[StageOp], dict[int, list[int]]]:
    """The plan's stage ops and the shapes of their tensors; a ValueError when the plan cannot be written."""
    sg = model.subgraphs[0]
    if plan.ops not in stages(model, plan.start):
        raise ValueError(f"ops {plan.start}..{plan.stop - 1} are not a patchable stage")
    stage = [stage_op(model, sg, i) for i in range(plan.start, plan.stop)]
    shapes = {t: _shape(sg, t) for so in stage for t in (*so.data_inputs, so.output)}
    h, w = shapes[stage[-1].output][1:3]
    if not (1 <= plan.rows <= min(h, MAX_CONCAT_INPUTS) and 1 <= plan.cols <= min(w, MAX_CONCAT_INPUTS)) \
            or plan.rows * plan.cols < 2:
        raise ValueError(f"a {plan.rows}x{plan.cols} grid does not divide a {h}x{w} stage output")
    return stage, shapes


def layout(model: Any, plan: PatchPlan) -> PatchLayout:
    stage, shapes = _checked_stage(model, plan)
    y = stage[-1].output
    x = next(t for so in stage for t in so.data_inputs if t not in {s.output for s in stage})
    h, w = shapes[y][1], shapes[y][2]
    cells = [(r0, r1, c0, c1) for r0, r1 in _split(h, plan.rows) for c0, c1 in _split(w, plan.cols)]
    ins = tuple(_regions(stage, shapes, cell, plan.stride_slack)[x] for cell in cells)
    return PatchLayout(x, y, tuple(shapes[x]), tuple(shapes[y]), tuple(cells), ins)


def patch(model: Any, plan: PatchPlan) -> int:
    """Rewrite ``model`` (a ``ModelT``) in place: ops ``plan.start`` .. ``plan.stop - 1`` computed patch by
    patch. Returns how many ops the stage became."""
    s = tflite_schema()
    sg = model.subgraphs[0]
    stage, shapes = _checked_stage(model, plan)
    originals = list(sg.operators)
    y = stage[-1].output
    h, w = shapes[y][1], shapes[y][2]
    ed = Editor(model)
    ed.origin = plan.start
    row_parts = []
    for ri, (r0, r1) in enumerate(_split(h, plan.rows)):
        cells = []
        for ci, (c0, c1) in enumerate(_split(w, plan.cols)):
            need = _regions(stage, shapes, (r0, r1, c0, c1), plan.stride_slack)
            tag = f"tinyflow_patch_{ri}_{ci}"
            # tensor -> (patch tensor, the region of the original tensor it holds)
            have: dict[int, tuple[int, Region]] = {}
            for so in stage:
                for t in so.data_inputs:
                    if t not in have:  # the stage input: its cell's region with halo, cut from the whole tensor
                        r = need[t]
                        if r == (0, shapes[t][1], 0, shapes[t][2]):
                            have[t] = (t, r)
                        else:
                            have[t] = (ed.strided_slice(t, [0, r[0], r[2], 0], [1, r[1], r[3], shapes[t][3]],
                                                        f"{tag}/in{t}"), r)
                o = need[so.output]
                a0, a1, b0, b1 = _need(so, o, plan.stride_slack)
                ins = []
                for t in so.data_inputs:
                    pt, (h0, h1, w0, w1) = have[t]
                    th, tw = shapes[t][1], shapes[t][2]
                    v = (max(a0, 0), min(a1, th), max(b0, 0), min(b1, tw))
                    if v != (h0, h1, w0, w1):
                        pt = ed.strided_slice(pt, [0, v[0] - h0, v[2] - w0, 0],
                                              [1, v[1] - h0, v[3] - w0, shapes[t][3]], f"{tag}/crop{so.index}")
                    pads = [(0, 0), (v[0] - a0, a1 - v[1]), (v[2] - b0, b1 - v[3]), (0, 0)]
                    if any(p for pair in pads for p in pair):
                        pt = ed.pad(pt, pads, f"{tag}/pad{so.index}")
                    ins.append(pt)
                if so.kind == "PAD":
                    have[so.output] = (ins[0], o)
                    continue
                out = ed.like(so.output, [1, o[1] - o[0], o[3] - o[2], shapes[so.output][3]], f"{tag}/op{so.index}")
                src = originals[so.index]
                new = ed.copy_op(src, [*ins, *[int(t) for t in src.inputs[len(ins):]]], [out])
                if so.kind != "ADD":
                    new.builtinOptions.padding = s.Padding.VALID
                have[so.output] = (out, o)
            cells.append(have[y][0])
        if len(cells) == 1:
            row_parts.append(cells[0])
        else:
            row = y if plan.rows == 1 else ed.like(y, [1, r1 - r0, w, shapes[y][3]], f"tinyflow_patch_{ri}/row")
            ed.concat(cells, 2, row)
            row_parts.append(row)
    if len(row_parts) > 1:
        ed.concat(row_parts, 1, y)
    sg.operators = originals[:plan.start] + ed.ops + originals[plan.stop:]
    return len(ed.ops)
