"""Graph rewrites that cut a model's peak memory below any plan of the converter's graph, outputs unchanged.

Takes int8 ``.tflite`` bytes and a ``Rewrite`` (a patch plan for the first ops, channel splits for chosen
convolutions); returns the rewritten ``.tflite`` bytes, a plain model that stock TFLM runs. The choice of
rewrite is the planner's (``plan`` scores candidates by the exact arena for a board); this stage only knows
which rewrites are exact and how to write them.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from typing import Any

from ..graph import rewrite_flatbuffer, unpack_model
from .editor import compact
from .patches import PatchLayout, PatchPlan, layout, patch, stages
from .split import split_channels, splittable


@dataclass(frozen=True)
class Rewrite:
    patches: tuple[PatchPlan, ...] = ()  # disjoint stages
    splits: tuple[tuple[int, int], ...] = field(default_factory=tuple)  # (op index in the original, groups)

    @property
    def empty(self) -> bool:
        return not self.patches and not self.splits

    def describe(self) -> str:
        parts = []
        for p in self.patches:
            slack = ", strided reads padded to the stride" if p.stride_slack else ""
            parts.append(f"ops {p.start}..{p.stop - 1} in {p.rows}x{p.cols} patches{slack}")
        parts += [f"op {i} in {g} channel groups" for i, g in self.splits]
        return "; ".join(parts) or "none"


@dataclass(frozen=True)
class Candidates:
    """What can be rewritten exactly: stages that can be patched, convs that can be split."""

    stages: tuple[tuple[int, int], ...]  # (first op, op count)
    splittable: tuple[tuple[int, int], ...]  # (op index, output channels)


def candidates(tflite: bytes) -> Candidates:
    model = unpack_model(tflite)
    n = len(model.subgraphs[0].operators)
    one = len(model.subgraphs) == 1  # control flow: its subgraphs are left alone
    cuts = tuple((i, k) for i in range(n) for k in stages(model, i)) if one else ()
    split = tuple((i, c) for i in range(n) if (c := splittable(model, i)) > 1) if one else ()
    return Candidates(cuts, split)


def apply_rewrite(tflite: bytes, rewrite: Rewrite) -> bytes:
    """The model with ``rewrite`` applied (op indices are the original model's), weights 16-aligned."""
    if rewrite.empty:
        return tflite
    return rewrite_flatbuffer(tflite, lambda model: rewrite_model(model, rewrite))


def rewrite_model(model: Any, rewrite: Rewrite) -> tuple[int, ...]:
    """Apply ``rewrite`` to an unpacked model (``ModelT``) in place. Returns, per op of the result, the
    original op it computes part of (glue ops: the stage's first op, or the split op)."""
    stages = sorted(rewrite.patches, key=lambda p: p.start)
    for a, b in itertools.pairwise(stages):
        if b.start < a.stop:
            raise ValueError("patched stages overlap")
    if any(p.start <= i < p.stop for p in stages for i, _ in rewrite.splits):
        raise ValueError("a split op inside a patched stage")
    for i, op in enumerate(model.subgraphs[0].operators):
        op.tinyflow_origin = i
    splits = dict(rewrite.splits)
    for p in reversed(stages):  # the last stage first: the ops before a stage keep their numbers
        shift = patch(model, p) - p.ops
        splits = {i + shift if i >= p.stop else i: g for i, g in splits.items()}
    if splits:
        split_channels(model, splits)
    if not rewrite.empty:
        compact(model)
    return tuple(op.tinyflow_origin for op in model.subgraphs[0].operators)


def editable_copy(model: Any) -> Any:
    """A copy of an unpacked model that ``rewrite_model`` may edit: everything but the weight buffers, which a
    rewrite never changes in place (it appends new ones), is copied."""
    out = copy.copy(model)
    for name in ("subgraphs", "operatorCodes", "metadata", "signatureDefs"):
        setattr(out, name, copy.deepcopy(getattr(model, name)))
    out.buffers = list(model.buffers)
    return out


def patch_layout(tflite: bytes, plan: PatchPlan) -> PatchLayout:
    return layout(unpack_model(tflite), plan)


__all__ = [
    "Candidates",
    "PatchLayout",
    "PatchPlan",
    "Rewrite",
    "apply_rewrite",
    "candidates",
    "editable_copy",
    "patch_layout",
    "rewrite_model",
]
