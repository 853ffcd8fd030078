"""What a board's optimized kernel library allocates beyond TFLM's reference kernels, by library version.

- ESP-NN (espressif/esp-tflite-micro 1.4.0 with espressif/esp-nn 1.2.3): CONV_2D, DEPTHWISE_CONV_2D and
  SOFTMAX request scratch buffers (kernels/esp_nn/{conv,depthwise_conv,softmax}.cc calling
  esp_nn_get_*_scratch_size). On the ESP32-S3 the conv/depthwise sizes come from the vector-unit kernels
  (esp-nn src/convolution/esp_nn_conv_esp32s3.c, esp_nn_depthwise_conv_s8_esp32s3.c); on other chips
  (ESP32, ESP32-C3) the generic C kernels need none. Their OpData gains an ``int buffer_idx``.
- CMSIS-NN (ARM-software/CMSIS-NN 4ab83cc as pinned by tflite-micro, Cortex-M4 with DSP, GCC):
  conv, depthwise and average-pool scratch (arm_*_get_buffer_size*), bigger FC and pooling OpData.

These formulas were checked against the libraries' own C size functions compiled on the host (thousands
of shapes, no mismatch). They change between library versions, even patch releases: esp-nn 1.1.2 asked for
far more on some shapes, 1.2.0 -> 1.2.1 changed the S3 conv/depthwise/softmax sizes, 1.2.2 -> 1.2.3 the conv
alignment (32 -> 64). So the rules are a registry keyed by the exact versions they were checked against
(``RULES``); a board (``kernel_library_version``) or ``--kernel-library-version`` names the versions, the
generated ESP-IDF project pins exactly those (``build_versions``), and a version without checked rules is
refused, never planned with another version's rules.

Reference kernels on an ESP-IDF board (``--kernels reference``): esp-tflite-micro's kernels/esp_nn/*.cc
replace TFLM's conv, depthwise, FC, add, mul, pooling and softmax, but with ``ESP_NN`` undefined each one
compiles to the reference path with the reference OpData (``NodeData``'s ``buffer_idx`` and every scratch
request are under ``#if ESP_NN``; checked in esp-tflite-micro 1.4.0), so the reference rules apply.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, replace

from ..boards import Board
from ..errors import InputError
from .kernels import Event, OpView

ESPNN_VERSION = "esp-tflite-micro 1.4.0 + esp-nn 1.2.3"
CMSIS_VERSION = "CMSIS-NN 4ab83cc"
_VERSION_RE = re.compile(r"esp-tflite-micro (\S+) \+ esp-nn (\S+)")


@dataclass(frozen=True)
class KernelRules:
    """One library version's allocation rules: OpData sizes where the kernel's differ from the reference
    kernel's (32-bit MCU), and the scratch requests its Prepare adds (``scratch(op, mcu)``)."""

    version: str  # the registry key, e.g. "esp-tflite-micro 1.4.0 + esp-nn 1.2.3"
    components: tuple[tuple[str, str], ...]  # what the firmware pins: (component, exact version)
    opdata: dict[str, int]
    scratch: Callable[[OpView, str], list[Event]]


def library_label(kernel_library: str, mcu: str, version: str | None = None) -> str:
    if kernel_library == "esp-nn":
        kind = "ESP32-S3 vector kernels" if mcu == "esp32s3" else "generic C kernels"
        return f"ESP-NN ({kind}; {version or ESPNN_VERSION})"
    if kernel_library == "cmsis-nn":
        return f"CMSIS-NN ({version or CMSIS_VERSION} (Cortex-M4, DSP, GCC))"
    if version is not None and _VERSION_RE.fullmatch(version):
        return f"TFLM reference kernels (ESP-NN off; {version})"
    return "TFLM reference kernels"


def _a(x: int, n: int) -> int:
    return (x + n - 1) // n * n


def _padding(v: OpView) -> tuple[int, int]:
    """TFLM's ComputePaddingHeightWidth: (pad_w, pad_h), the odd remainder dropped."""
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    fh, fw = f.shape[1], f.shape[2]  # filters are [Cout, H, W, Cin] (conv) or [1, H, W, C] (depthwise)
    o = v.opts

    def pad(in_size: int, out_size: int, filt: int, stride: int, dil: int) -> int:
        eff = (filt - 1) * dil + 1
        return max(0, (out_size - 1) * stride + eff - in_size) // 2

    return (pad(inp.shape[2], out.shape[2], fw, o.get("strideW", 1), o.get("dilationWFactor", 1)),
            pad(inp.shape[1], out.shape[1], fh, o.get("strideH", 1), o.get("dilationHFactor", 1)))


def _espnn_s3_conv(v: OpView) -> int:
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    in_h, in_w, c = inp.shape[1], inp.shape[2], inp.shape[3]
    out_h, out_w, cout = out.shape[1], out.shape[2], out.shape[3]
    fh, fw = f.shape[1], f.shape[2]
    sw, sh = v.opts.get("strideW", 1), v.opts.get("strideH", 1)
    pw, ph = _padding(v)
    a8 = _a(c, 8)
    if fw == 1 and fh == 1 and pw == 0 and ph == 0 and sw == 1 and sh == 1:
        return (in_w * in_h * a8 if c % 8 else 0) + a8 * cout + (0 if in_w * in_h < 8 else 16 * a8) + 64
    row, window = fw * c, fw * fh * c
    if row < 16 and window >= 16:  # im2col path, e.g. 3x3 over 3 channels
        wla = _a(window, 16)
        return 4 * cout + 16 + cout * wla + 16 + wla + 64
    pad_r = max(0, out_w * sw + fw - 1 - in_w)
    pad_b = max(0, out_h * sh + fh - 1 - in_h)
    return (((in_w + 2 * pw) * (in_h + 2 * ph) * c) if (pw or ph) else 0) + fw * fh * _a(c, 16) * cout \
        + _a(row, 16) * fh * cout + (((in_w + pad_r) * (in_h + pad_b) * c) if (pad_r or pad_b) else 0) + 64 + 4 * cout


def _espnn_s3_depthwise(v: OpView) -> int:
    inp, out, f = v.inp(0), v.outs[0], v.inp(1)
    in_h, in_w, c = inp.shape[1], inp.shape[2], inp.shape[3]
    out_h, out_w = out.shape[1], out.shape[2]
    fh, fw = f.shape[1], f.shape[2]
    mult = v.opts.get("depthMultiplier", 1)
    sw, sh = v.opts.get("strideW", 1), v.opts.get("strideH", 1)
    pw, ph = _padding(v)
    fsz = fw * fh * c * mult
    if mult == 1 and c % 8 == 0:
        if fw == 3 and fh == 3:
            if c % 16 == 0:
                ppw, pph = (2 * pw, 2 * ph) if (pw or ph) else (out_w * sw + 2 - in_w, out_h * sh + 2 - in_h)
                if ppw or pph:
                    full = (in_w + ppw) * (in_h + pph) * c
                    return fsz + full + 16 if full <= 40 * 1024 else fsz + (in_w + ppw) * 3 * c + 16
                return fsz + 16
            if c >= 12:
                nc = _a(c, 16)
                tpw = 2 * pw + max(0, out_w * sw + 2 - in_w)
                tph = 2 * ph + max(0, out_h * sh + 2 - in_h)
                return 9 * nc + (in_w + tpw) * (in_h + tph) * nc + out_w * out_h * nc + 64
            return 2 * (fsz + in_w * in_h * c) + 32
        s16 = 2 * (fsz + in_w * in_h * c)
        return s16 + 32 if s16 <= 48 * 1024 else 2 * fsz + 2 * in_w * fh * c + 32
    if mult == 1 and c > 3:
        pc = _a(c, 8)
        in_start = _a(2 * fw * fh * pc, 16)
        out_start = _a(in_start + 2 * in_w * in_h * pc, 16)
        bias_start = _a(out_start + out_w * out_h * pc, 16)
        return bias_start + 12 * pc + 16
    if mult % 4 == 0:
        return 2 * (fsz + in_w * in_h * c) + 32
    return 32


# Init's OpData on a 32-bit MCU where the library's kernel differs from the reference one.
_ESPNN_OPDATA = {"CONV_2D": 60, "DEPTHWISE_CONV_2D": 60,  # NodeData {OpDataConv; int buffer_idx}
                 "SOFTMAX": 64}  # NodeData {SoftmaxParams; int buffer_idx}, 8-aligned
_CMSIS_OPDATA = {"CONV_2D": 60, "DEPTHWISE_CONV_2D": 60, "SOFTMAX": 64, "FULLY_CONNECTED": 72,
                 "AVERAGE_POOL_2D": 36, "MAX_POOL_2D": 36}


def _espnn_scratch(v: OpView, s3: bool) -> list[Event]:
    name, inp = v.name, v.inp(0)
    int8_in = inp is not None and inp.dtype == "INT8"
    if name == "CONV_2D" and int8_in and s3:
        return [("S", _espnn_s3_conv(v))]
    if name == "DEPTHWISE_CONV_2D" and int8_in and s3:
        return [("S", _espnn_s3_depthwise(v))]
    if name == "SOFTMAX" and int8_in and v.outs[0].dtype == "INT8":
        # esp-nn sizes it from dims[1]: right for [N, C] inputs, too small for [1, 1, 1, C] (an esp-nn bug)
        return [("S", 4 * inp.shape[1])]
    return []


def _cmsis_scratch(v: OpView) -> list[Event]:
    name, inp = v.name, v.inp(0)
    if inp is None or inp.dtype != "INT8":
        return []
    if name == "CONV_2D":
        f = v.inp(1)
        fh, fw, c = f.shape[1], f.shape[2], inp.shape[3]
        pw, ph = _padding(v)
        dil = (v.opts.get("dilationWFactor", 1), v.opts.get("dilationHFactor", 1))
        if pw == 0 and ph == 0 and fw == fh == 1 and dil == (1, 1) and c == f.shape[3]:
            return []
        return [("S", 4 * _a(fw * fh * c, 4))]
    if name == "DEPTHWISE_CONV_2D":
        f = v.inp(1)
        fh, fw, c, cout = f.shape[1], f.shape[2], inp.shape[3], v.outs[0].shape[3]
        pw, ph = _padding(v)
        dil = (v.opts.get("dilationWFactor", 1), v.opts.get("dilationHFactor", 1))
        if c == cout and inp.shape[0] == 1 and dil == (1, 1):
            if fw == fh == 3 and pw <= 1 and ph <= 1:
                return []
            return [("S", 2 * c * fw * fh)]
        return []
    if name == "AVERAGE_POOL_2D":
        return [("S", 4 * inp.shape[-1])]
    if name == "FULLY_CONNECTED":
        out, f = v.outs[0], v.inp(1)
        depth = f.shape[-1]
        if len(out.shape) > 2 and depth % 4 == 0 and f.channels <= 1:
            return [("S", 8 * out.shape[-1])]
    return []


def _espnn_rules(v: OpView, mcu: str) -> list[Event]:
    return _espnn_scratch(v, s3=mcu == "esp32s3")


def _cmsis_rules(v: OpView, mcu: str) -> list[Event]:
    return _cmsis_scratch(v)


# The registry: library -> exact versions -> the rules checked against that version's source. Add a version
# only after checking its size functions (esp-nn src/*/esp_nn_*_esp32s3.c and the kernels/esp_nn/*.cc that
# call them); a version not here is refused.
RULES: dict[str, dict[str, KernelRules]] = {
    "esp-nn": {ESPNN_VERSION: KernelRules(ESPNN_VERSION, (("esp-tflite-micro", "1.4.0"), ("esp-nn", "1.2.3")),
                                          _ESPNN_OPDATA, _espnn_rules)},
    "cmsis-nn": {CMSIS_VERSION: KernelRules(CMSIS_VERSION, (), _CMSIS_OPDATA, _cmsis_rules)},
}
DEFAULT_VERSION = {"esp-nn": ESPNN_VERSION, "cmsis-nn": CMSIS_VERSION}
# What an ESP-IDF project pins for each esp-nn key (with ESP-NN off as well: the components stay pinned).
_COMPONENT_SETS = {k: r.components for k, r in RULES["esp-nn"].items()}


def known_versions(kernel_library: str) -> tuple[str, ...]:
    """The exact versions tinyflow has checked rules for."""
    return tuple(RULES.get(kernel_library, {}))


def check_version(kernel_library: str, version: str | None, where: str) -> str | None:
    """The version key to plan with (``None`` for a library without versions: TFLM's reference kernels);
    an unknown version is an ``InputError`` naming ``where`` and the versions tinyflow knows."""
    if version is None:
        return DEFAULT_VERSION.get(kernel_library)
    known = known_versions(kernel_library)
    if version not in known:
        listed = "; ".join(f'"{k}"' for k in known) or "none (reference kernels have no library version)"
        raise InputError(f'{where} "{version}": tinyflow has no {kernel_library} allocation rules for those '
                         f"versions (it knows: {listed}); give one of those, or check that version's scratch "
                         "functions against its source and add them to tinyflow/plan/kernel_libraries.py")
    return version


def _versioned_library(board: Board) -> str:
    # Reference kernels on an ESP-IDF board are esp-tflite-micro built with ESP_NN off: the project still pins
    # an esp-tflite-micro/esp-nn set, named by the esp-nn registry's keys.
    return "esp-nn" if board.kernel_library == "reference" and board.idf_target is not None else board.kernel_library


def rules_id(board: Board) -> str:
    """What the planner's ``kernel_library`` argument carries: ``library`` or ``library@version``."""
    version = planned_version(board)
    return board.kernel_library if version is None or board.kernel_library == "reference" \
        else f"{board.kernel_library}@{version}"


def with_kernels(board: Board, kernels: str | None = None, version: str | None = None) -> Board:
    """``board`` with the command line's ``--kernels`` and ``--kernel-library-version`` applied (and checked:
    an unknown version is an ``InputError`` naming the option and the versions tinyflow knows)."""
    if kernels not in (None, "board", "reference"):
        raise InputError(f"--kernels {kernels!r}: give \"board\" (the board's kernel_library) or \"reference\"")
    if kernels == "reference" and board.kernel_library != "reference":
        # Only an ESP-IDF project compiles its TFLM from source, where the kernels can be switched; Arduino TFLM
        # libraries (the ESP32 core's, Chirale_TensorFlowLite for CMSIS-NN) come prebuilt with theirs.
        if board.idf_target is None or board.platformio is None or board.platformio.framework != "espidf":
            raise InputError(f"--kernels reference: {board.id} builds its TFLM library with {board.kernel_library} "
                             "prebuilt in, so its firmware cannot switch to reference kernels; use an ESP-IDF board "
                             "(e.g. --board esp32s3) or leave --kernels out")
        board = replace(board, kernel_library="reference")
    if version is not None:
        check_version(_versioned_library(board), version, "--kernel-library-version")
        board = replace(board, kernel_library_version=version)
    planned_version(board)  # the board file's own version, checked before any planning work
    return board


def planned_version(board: Board) -> str | None:
    """The library versions the plan for ``board`` assumes (for reference kernels on an ESP-IDF board: the
    esp-tflite-micro/esp-nn set the project pins, ESP-NN switched off)."""
    return check_version(_versioned_library(board), board.kernel_library_version,
                         f"{board.source}: kernel_library_version")


def kernels_label(board: Board) -> str:
    """The plan's "kernels" line: which kernels were planned (and built), with their exact versions."""
    return library_label(board.kernel_library, board.mcu, planned_version(board))


def _rules(kernel_library: str) -> KernelRules | None:
    library, _, version = kernel_library.partition("@")
    versions = RULES.get(library)
    if versions is None:
        return None
    key = version or DEFAULT_VERSION[library]
    if key not in versions:
        raise InputError(f'kernel library version "{key}": tinyflow has no {library} rules for it (it knows: '
                         f"{', '.join(versions)})")
    return versions[key]


def build_versions(board: Board) -> dict[str, str]:
    """The versions a generated project for ``board`` pins (compare with what the device's HELLO reports):
    keys "esp-tflite-micro", "esp-nn" (ESP-IDF boards) and "arduino-core" (boards with an Arduino core
    version); the same values as the TINYFLOW_BUILD_* macros in tinyflow_config.h."""
    out: dict[str, str] = {}
    if board.idf_target is not None:
        out.update(dict(_COMPONENT_SETS.get(planned_version(board) or "", ())))
    if board.arduino is not None and "@" in board.arduino.core:
        out["arduino-core"] = board.arduino.core.rsplit("@", 1)[1]
    return out


def arduino_kernels_note(board: Board) -> str | None:
    """What the plan can and cannot say about the Arduino sketch's kernels on an ESP board (None elsewhere).

    The Arduino-ESP32 core 3.x links a prebuilt esp-tflite-micro (its libraries/TFLiteMicro wraps it), built by
    espressif/esp32-arduino-lib-builder, whose main/idf_component.yml asks for espressif/esp-tflite-micro
    ">=1.2.0": the versions are whatever resolved when that core was built, recorded only in the
    esp32-arduino-libs archive (its 3.0-era builds list esp-tflite-micro 1.2.0 + esp-nn 1.0.2 in versions.txt).
    tinyflow found no record for the pinned core, so it says so and sizes with the rules it has."""
    if board.arduino is None or board.idf_target is None:
        return None
    core = board.arduino.core
    sized = planned_version(board)
    # With one rule set there is no larger figure to take. A second esp-nn version must make the sketch's plan
    # the largest of them (tests/test_kernel_versions.py pins the registry to one set until then).
    text = (f"Arduino sketch ({core}): the core links a prebuilt esp-tflite-micro/esp-nn whose versions tinyflow "
            "could not determine (esp32-arduino-lib-builder asks for esp-tflite-micro >=1.2.0); its arena is sized "
            f"with {sized}, the only rule set tinyflow has: unverified for this core, compare with the "
            "arena_used_bytes() the sketch reports")
    if board.kernel_library == "reference":
        text += ("; --kernels reference does not reach the sketch (the core's library is prebuilt with ESP-NN): "
                 "use the platformio/ project to measure reference kernels")
    return text


def adjust_init(v: OpView, kernel_library: str, events: list[Event]) -> list[Event]:
    """The reference kernel's Init events, with the library kernel's OpData size where it differs."""
    rules = _rules(kernel_library)
    table = rules.opdata if rules is not None else {}
    if v.name in table and events:
        return [("P", table[v.name]), *events[1:]]
    return events


def extra_prepare(v: OpView, kernel_library: str, mcu: str) -> list[Event]:
    """Scratch requests the library's kernel makes in Prepare beyond the reference kernel's."""
    rules = _rules(kernel_library)
    return rules.scratch(v, mcu) if rules is not None else []
