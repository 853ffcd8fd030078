"""Render the firmware's source files from the Jinja templates: everything is computed here, the
templates only substitute and loop. No C is built by string concatenation outside the templates."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from .. import __version__
from ..boards import Board
from ..errors import InputError
from ..graph import ModelGraph, Tensor, resolver_method
from ..paths import templates_dir
from ..plan import BoardPlan, arduino_kernels_note, build_versions
from ..protocol import MAX_BENCH_RUNS, PROTOCOL_VERSION, TENSOR_TYPE_CODES
from .cnames import (
    c_uint32,
    comment_text,
    header_name,
    identifier,
    ini_key,
    ini_value,
    kconfig_string,
    kconfig_symbol,
    shell_word,
    sketch_name,
    string_literal,
    yaml_string,
)

BYTES_PER_LINE = 16
_CTYPES = {"INT8": "int8_t", "UINT8": "uint8_t", "INT16": "int16_t", "INT32": "int32_t", "FLOAT32": "float"}


@dataclass(frozen=True)
class SelfTest:
    """Inputs and the host TFLM outputs the firmware checks at boot (raw tensor bytes)."""

    inputs: list[bytes]
    outputs: list[bytes]


def environment() -> jinja2.Environment:
    # StrictUndefined: a missing value is an error at generation time, never an empty string in C.
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir())), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    # One filter per target format: every board string a template writes names the format it lands in.
    env.filters.update(ini=ini_value, ini_key=ini_key, kconfig_string=kconfig_string, kconfig_symbol=kconfig_symbol,
                       sh=shell_word, yaml=yaml_string, c_header=header_name)
    return env


def byte_rows(data: bytes, per_line: int = BYTES_PER_LINE) -> list[str]:
    return [", ".join(f"0x{b:02x}" for b in data[i:i + per_line]) + "," for i in range(0, len(data), per_line)]


def _float_literal(x: float) -> str:
    # repr of the float32 value round-trips exactly; the f suffix keeps it single precision.
    v = float(np.float32(x))
    text = repr(v)
    return (text if "e" in text or "." in text else text + ".0") + "f"


def _tensor_ctx(t: Tensor, index: int) -> dict[str, Any]:
    if t.dtype not in _CTYPES:
        raise InputError(f"tensor '{t.name}' has type {t.dtype}; the firmware handles int8, uint8, int16, int32 and "
                         "float32 model inputs and outputs")
    q = t.quantization
    return {
        "index": index,
        "name": comment_text(t.name),
        "dtype": t.dtype.lower(),
        "dtype_code": TENSOR_TYPE_CODES[t.dtype.lower()],
        "ctype": _CTYPES[t.dtype],
        "shape": list(t.shape),
        "rank": len(t.shape),
        "dims": ", ".join(str(d) for d in (list(t.shape) + [0] * 6)[:6]),
        "bytes": t.bytes,
        "scale": _float_literal(q.scale if q else 0.0),
        "zero_point": q.zero_point if q else 0,
    }


def resolver_ops(graph: ModelGraph) -> list[dict[str, str]]:
    """One MicroMutableOpResolver call per distinct op; an op TFLM cannot register is an error now, not on
    the device ("Didn't find op for builtin opcode")."""
    ops = []
    for name in graph.op_names:
        method = resolver_method(name)
        if method is None:
            index = next(op.index for sg in graph.subgraphs for op in sg.operators if op.name == name)
            raise InputError(f"op {index} ({name}) has no TFLM kernel to register; the firmware could not run "
                             "this model")
        ops.append({"name": name, "method": method})
    return ops


def _labels(labels: list[str] | None, graph: ModelGraph) -> list[str]:
    out = graph.output_tensors()[0]
    classes = out.shape[-1] if out.shape else 1
    if labels is None:
        return []
    if len(labels) != classes:
        raise InputError(f"{len(labels)} labels given but the model's first output has {classes} classes; give "
                         "one label per class")
    return [string_literal(label) for label in labels]


def context(graph: ModelGraph, tflite: bytes, bp: BoardPlan, model_name: str, labels: list[str] | None = None,
            self_test: SelfTest | None = None, psram: bool | None = None) -> dict[str, Any]:
    board: Board = bp.board
    if bp.memory is None or bp.budget is None:
        raise InputError(f"{model_name}: the model has ops TFLM cannot run; `tinyflow plan` lists them")
    if any(op.name == "VAR_HANDLE" for sg in graph.subgraphs for op in sg.operators):
        raise InputError(f"{model_name}: the model keeps state in resource variables (VAR_HANDLE), which tinyflow's "
                         "firmware does not set up yet; `tinyflow plan` still sizes its arena; to deploy, export "
                         "the model without tf.Variable state")
    region = bp.budget.region or ("psram" if psram else "sram")
    inputs = [_tensor_ctx(t, i) for i, t in enumerate(graph.input_tensors())]
    outputs = [_tensor_ctx(t, i) for i, t in enumerate(graph.output_tensors())]
    in_bytes = sum(t["bytes"] for t in inputs)
    out_bytes = sum(t["bytes"] for t in outputs)
    # Response body: header 7 + status/timing 9 + outputs + CRC 4; BENCH keeps 8 bytes per run before an output.
    body = max(7 + 9 + out_bytes + 4, 7 + 3 + 8 * MAX_BENCH_RUNS + out_bytes + 4, 1024)
    name = identifier(model_name)
    st = None
    if self_test is not None and self_test.inputs:
        st = {"count": len(self_test.inputs),
              "inputs": byte_rows(b"".join(self_test.inputs)),
              "outputs": byte_rows(b"".join(self_test.outputs))}
    pio, ard = board.platformio, board.arduino
    versions = build_versions(board)
    return {
        "tinyflow_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "model": {
            "name": name,
            "title": comment_text(model_name),
            "bytes": len(tflite),
            "rows": byte_rows(tflite),
            "sha256": graph.sha256,
            "sha256_bytes": ", ".join(f"0x{b:02x}" for b in bytes.fromhex(graph.sha256)),
            "ops_in_graph": len(graph.main.operators),
        },
        "ops": resolver_ops(graph),
        "inputs": inputs,
        "outputs": outputs,
        "input_bytes": in_bytes,
        "output_bytes": out_bytes,
        "labels": _labels(labels, graph),
        "arena": {
            "bytes": bp.budget.arena_bytes,
            "planned_bytes": bp.memory.min_arena_bytes,
            "margin_bytes": board.arena_margin_bytes,
            "psram": region == "psram",
            "region": region,
        },
        "buffers": {"rx": in_bytes + in_bytes // 254 + 64, "body": body, "tx": body + body // 254 + 16,
                    "bench_runs": MAX_BENCH_RUNS},
        "board": {
            "id": string_literal(board.id),
            "id_comment": comment_text(board.id),
            "name": comment_text(board.name),
            "cpu_mhz": c_uint32(board.cpu_mhz, "cpu_mhz"),
            "console": board.console,
            "baud": c_uint32(board.monitor_speed, "serial.monitor_speed"),
            "idf_target": board.idf_target or "",
            "psram_mode": board.psram_mode or "",
            "flash_mb": board.flash_bytes // (1024 * 1024),
            "flash_mode": board.flash_mode or "",
            "kernels": comment_text(bp.kernels),
            "runtime": string_literal(bp.kernels),
        },
        "self_test": st,
        "platformio": None if pio is None else {
            "platform": pio.platform, "board": pio.board, "framework": pio.framework,
            "options": list(pio.options.items()),
            "lib_deps": [],
        },
        "arduino": None if ard is None else {
            "fqbn": ard.fqbn, "core": ard.core, "options": dict(ard.options),
            "pio_platform": ard.pio_platform, "pio_board": ard.pio_board,
            "sketch": sketch_name(model_name),
        },
        # The exact versions the project pins (idf_component.yml, sketch.yaml) and the firmware reports.
        "versions": {"esp_tflite_micro": versions.get("esp-tflite-micro"), "esp_nn": versions.get("esp-nn"),
                     "arduino_core": versions.get("arduino-core")},
        "versions_c": {k: string_literal(versions.get(k, "")) for k in ("esp-tflite-micro", "esp-nn", "arduino-core")},
        # --kernels reference on an ESP-IDF board: the same esp-tflite-micro with its -DESP_NN undone.
        "esp_nn_off": board.idf_target is not None and board.kernel_library == "reference",
        "reference_kernels": board.kernel_library == "reference",
        "arduino_kernels_note": arduino_kernels_note(board),
        "partition": None,  # filled by project.py with the table the budget chose
        "esp": board.idf_target is not None,
    }


def render(template: str, ctx: dict[str, Any]) -> str:
    try:
        return environment().get_template(template).render(**ctx)
    except jinja2.UndefinedError as e:
        raise RuntimeError(f"template {template}: {e}") from e  # a bug in tinyflow, not the user's input


def read_c_array(text: str) -> bytes:
    """Parse a generated ``{ 0x.., ... }`` array body back into bytes (used by tests and checks)."""
    import re

    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{2})", text))


def raw(t_bytes: np.ndarray) -> bytes:
    return np.ascontiguousarray(t_bytes).tobytes()


def pack_floats(values: list[float]) -> bytes:
    return struct.pack(f"<{len(values)}f", *values)


def template_path(name: str) -> Path:
    return templates_dir() / name
