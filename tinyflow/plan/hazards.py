"""Predict, from quantization parameters, the models TFLM refuses or aborts on in AllocateTensors().

On a board an abort is a crash at boot with no message, and a refusal is an AllocateTensors() error that
only the serial log shows. Each rule below is a check in a reference kernel's Prepare (tflite-micro
90b983c; ESP-NN and CMSIS-NN share the same *_common.cc Prepare code) or in quantization_util.cc, and
each was reproduced on the pinned tflite-micro wheel with a mutated model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..graph import ModelGraph, Operator, Tensor

ABORT = "abort"  # TFLITE_CHECK: the process (the board) dies in AllocateTensors, no message
ERROR = "error"  # Prepare fails: AllocateTensors returns an error
INVOKE = "invoke-error"  # builds, then every Invoke() fails

_FUSED = {0: None, 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6", 4: "TANH", 5: "SIGN_BIT"}
_SOFTMAX_INPUT_MIN = 2.0 ** -26  # PreprocessSoftmaxScaling: beta*s*2^26 must exceed 1


@dataclass(frozen=True)
class Hazard:
    op_index: int
    op: str
    tensor: str
    kind: str
    cause: str

    def __str__(self) -> str:
        what = {ABORT: "TFLM aborts (the board crashes at boot)", ERROR: "AllocateTensors() fails",
                INVOKE: "every inference fails"}[self.kind]
        return f"op {self.op_index} ({self.op}), tensor '{self.tensor}': {what}: {self.cause}"


def _f32(x: float) -> float:
    return float(np.float32(x))


def _scale(t: Tensor | None) -> float | None:
    return t.quantization.scale if t is not None and t.quantization is not None else None


def _zp(t: Tensor | None) -> int:
    return t.quantization.zero_point if t is not None and t.quantization is not None else 0


def _constant_logits(s: float) -> str:
    return (f"its input scale is {s:.3g}, so the values feeding it span about {256 * s:.3g}: they are "
            "(nearly) constant over the calibration data, e.g. the layers before it output only zeros; "
            "check the model and the representative data")


def _softmax(op: Operator, inp: Tensor, out: Tensor) -> list[tuple[str, str, str]]:
    found = []
    s_in, s_out = _scale(inp), _scale(out)
    if inp.dtype == "INT8" and s_in is not None:
        beta = float(op.options.get("beta", 1.0))
        if beta * s_in <= _SOFTMAX_INPUT_MIN:
            found.append((inp.name, ABORT, _constant_logits(s_in)))
        if out.dtype == "INT8":
            if _zp(out) != -128:
                found.append((out.name, ERROR, f"int8 softmax output zero point must be -128, not {_zp(out)}"))
            if s_out is not None and _f32(s_out) != _f32(1 / 256):
                found.append((out.name, ERROR, f"int8 softmax output scale must be exactly 1/256, not {s_out:.6g}"))
    if inp.dtype == "INT16":
        if _zp(inp) or _zp(out):
            found.append((inp.name, ERROR, "int16 softmax needs zero points of 0"))
        if s_out is not None and abs(s_out - 1 / 32768) > 0.001 / 32768:
            found.append((out.name, ERROR, f"int16 softmax output scale must be 1/32768, not {s_out:.6g}"))
    return found


def _log_softmax(op: Operator, inp: Tensor, out: Tensor) -> list[tuple[str, str, str]]:
    found = []
    if inp.dtype == "INT8":
        s_in = _scale(inp)
        if s_in is not None and s_in <= _SOFTMAX_INPUT_MIN:
            found.append((inp.name, ABORT, _constant_logits(s_in)))
        if _f32(_scale(out) or 0) != _f32(16 / 256) or _zp(out) != 127:
            found.append((out.name, ERROR, "int8 log-softmax output must have scale 1/16 and zero point 127"))
    return found


def _add_sub(op: Operator, a: Tensor, b: Tensor, out: Tensor) -> list[tuple[str, str, str]]:
    if a.dtype not in ("INT8", "INT16") or None in (_scale(a), _scale(b), _scale(out)):
        return []
    s1, s2, so = _scale(a), _scale(b), _scale(out)
    found = []
    for t, s in ((a, s1), (b, s2)):
        if s <= 0:
            found.append((t.name, ABORT, f"input scale {s:.3g} is not positive"))
    if found:
        return found
    left_shift = 20 if a.dtype == "INT8" else 15
    multiplier = 2 * max(s1, s2) / ((1 << left_shift) * so)
    # QuantizeMultiplierSmallerThanOneExp: a multiplier that rounds to 1 (>= 1 - 2^-32) trips a check.
    if so <= 0 or multiplier >= 1 - 2.0 ** -32:
        found.append((out.name, ABORT, f"output scale {so:.3g} is too small for input scales {s1:.3g} and {s2:.3g} "
                      f"(needs more than max input scale / 2^{left_shift - 1}); the sum is (nearly) constant over "
                      "the calibration data"))
    return found


def _fused_activation(op: Operator, out: Tensor) -> list[tuple[str, str, str]]:
    act = _FUSED.get(op.options.get("fusedActivationFunction", 0))
    s = _scale(out)
    if s is None or out.dtype not in ("INT8", "INT16", "UINT8"):
        return []
    limit = {"RELU6": 6.0, "RELU_N1_TO_1": 1.0}.get(act or "")
    if (act == "RELU" and s == 0) or (limit and (s == 0 or limit / s >= 2.0 ** 31)):
        return [(out.name, ERROR, f"output scale {s:.3g} cannot represent the fused {act} range")]
    return []


def _fully_connected(op: Operator, inp: Tensor, w: Tensor, bias: Tensor | None, out: Tensor):
    s_in, s_w, s_out = _scale(inp), _scale(w), _scale(out)
    if None in (s_in, s_w, s_out) or w.quantization.per_channel:
        return []
    found = []
    product = s_in * s_w
    if bias is not None and _scale(bias) is not None and abs(product - _scale(bias)) / s_out > 0.02:
        found.append((bias.name, ERROR, f"bias scale {_scale(bias):.3g} differs from input x weight scale "
                      f"{product:.3g} by more than 2% of the output scale"))
    if _f32(product) < 0:
        found.append((inp.name, ERROR, "input x weight scale is negative"))
    return found


def _same_quantization(op: Operator, ins: list[Tensor], out: Tensor, exact: bool) -> list[tuple[str, str, str]]:
    found = []
    for t in ins:
        if t is None or t.quantization is None or out.quantization is None or t.dtype not in ("INT8", "INT16"):
            continue
        differs = t.quantization.scale != out.quantization.scale if exact else \
            abs(t.quantization.scale - out.quantization.scale) > 1e-6
        if differs or _zp(t) != _zp(out):
            found.append((t.name, ERROR, f"{op.name} needs its int8 inputs and output to share scale and zero point "
                          f"({t.quantization.scale:.6g}/{_zp(t)} vs {out.quantization.scale:.6g}/{_zp(out)})"))
    return found


def op_hazards(op: Operator, tensors: tuple[Tensor, ...]) -> list[Hazard]:
    ins = [tensors[i] if i >= 0 else None for i in op.inputs]
    outs = [tensors[i] for i in op.outputs]
    if not ins or not outs or ins[0] is None:
        return []
    inp, out = ins[0], outs[0]
    name = op.name
    found: list[tuple[str, str, str]] = []
    if name == "SOFTMAX":
        found = _softmax(op, inp, out)
    elif name == "LOG_SOFTMAX":
        found = _log_softmax(op, inp, out)
    elif name == "LOGISTIC" and inp.dtype == "INT8" and _zp(out) != -128:
        found = [(out.name, ERROR, f"int8 logistic output zero point must be -128, not {_zp(out)}")]
    elif name in ("ADD", "SUB") and len(ins) > 1 and ins[1] is not None:
        found = _add_sub(op, inp, ins[1], out) + _fused_activation(op, out)
    elif name in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV", "MUL"):
        found = _fused_activation(op, out)
    elif name == "FULLY_CONNECTED" and len(ins) > 1 and ins[1] is not None:
        found = _fully_connected(op, inp, ins[1], ins[2] if len(ins) > 2 else None, out) + _fused_activation(op, out)
    elif name in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        found = _same_quantization(op, [inp], out, exact=False)
    elif name == "CONCATENATION" and out.dtype == "INT8":
        found = _same_quantization(op, ins, out, exact=True)
    elif name == "PAD" and out.dtype == "INT8" and not -128 <= _zp(out) <= 127:
        found = [(out.name, ERROR, f"output zero point {_zp(out)} is outside the int8 range")]
    elif name == "PADV2" and out.dtype == "INT8" and len(ins) > 2 and ins[2] is not None:
        found = _same_quantization(op, [ins[2]], out, exact=True)
    elif name == "QUANTIZE" and out.quantization is not None and out.quantization.per_channel:
        found = [(out.name, ERROR, "QUANTIZE cannot produce a per-channel quantized output")]
    elif name == "HARD_SWISH" and inp.dtype == "INT8" and _scale(inp) and _scale(out):
        if _f32(_f32(_scale(inp) / 128) / _scale(out)) >= 1.0:
            found = [(out.name, ERROR, f"output scale {_scale(out):.3g} must exceed input scale / 128")]
    elif name == "SQUARED_DIFFERENCE":
        found = [(t.name, ABORT, f"input scale {_scale(t):.3g} is not positive") for t in ins
                 if t is not None and _scale(t) is not None and _scale(t) <= 0]
    elif name == "EXP" and inp.dtype != "FLOAT32":
        found = [(inp.name, ERROR, f"TFLM's EXP kernel only takes float32, not {inp.dtype.lower()}")]
    elif name in ("REDUCE_MAX", "REDUCE_MIN") and inp.dtype == "INT8":
        found = [(t, INVOKE, c) for t, _, c in _same_quantization(op, [inp], out, exact=True)]
    return [Hazard(op.index, name, tensor, kind, cause) for tensor, kind, cause in found]


def find_hazards(graph: ModelGraph) -> list[Hazard]:
    """Every predicted refusal or abort, in op order (all subgraphs)."""
    return [h for sg in graph.subgraphs for op in sg.operators for h in op_hazards(op, sg.tensors)]
