"""Write the firmware projects a user opens and builds: a PlatformIO project and an Arduino sketch.

One template set serves every board; what differs between boards (framework, console, PSRAM, TFLM
library) comes from the board file. Files are rendered in memory and written into an output folder
that is published whole (see ``outdir``).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..boards import partition_rows_problem
from ..errors import InputError
from ..graph import ModelGraph, quantize
from ..model import run_model
from ..outdir import OutputDir, write_text
from ..paths import templates_dir
from ..plan import BoardPlan
from .cnames import UnsafeText, c_uint32, comment_text, macro
from .codegen import SelfTest, context, render

# Shared sources: (template, file name stem). Arduino compiles .cpp, ESP-IDF takes .cc.
_COMMON = [("common/model_data.h.j2", "model_data.h"), ("common/model_data.cc.j2", "model_data.cc"),
           ("common/op_resolver.h.j2", "op_resolver.h"), ("common/tinyflow_config.h.j2", "tinyflow_config.h"),
           ("common/tinyflow_app.cc.j2", "tinyflow_app.cc")]
_STATIC = ["tinyflow_protocol.h", "tinyflow_protocol.cc", "tinyflow_platform.h", "tinyflow_app.h"]


@dataclass(frozen=True)
class FirmwareProject:
    root: Path
    platformio: Path | None
    arduino: Path | None
    files: tuple[Path, ...]


def self_test_vectors(tflite: bytes, graph: ModelGraph, count: int, x: np.ndarray | None,
                      seed: int = 0) -> SelfTest | None:
    """``count`` inputs (test samples when given, else random ones) and the host TFLM's outputs for them."""
    if count <= 0:
        return None
    inputs = graph.input_tensors()
    if len(inputs) != 1:
        raise InputError("--self-test supports single-input models")
    t = inputs[0]
    if x is not None:
        q = quantize(x[:count].astype(np.float32), t)
    else:
        q = _random_inputs(t.dtype, (count, *t.shape[1:]), seed)
    outs = run_model(tflite, [q], source="self-test")
    rows_out = [b"".join(np.ascontiguousarray(o[i]).tobytes() for o in outs) for i in range(len(q))]
    return SelfTest([np.ascontiguousarray(r).tobytes() for r in q], rows_out)


_INT_TYPES = {"INT8": np.int8, "UINT8": np.uint8, "INT16": np.int16, "INT32": np.int32}


def _random_inputs(dtype: str, shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Random self-test inputs in the input tensor's own type (a float model takes floats, not bytes)."""
    rng = np.random.default_rng(seed)
    if dtype == "FLOAT32":
        return rng.normal(0.0, 1.0, size=shape).astype(np.float32)
    if dtype not in _INT_TYPES:
        raise InputError(f"--self-test: the model's input is {dtype}; tinyflow feeds int8, uint8, int16, int32 or "
                         "float32 inputs")
    info = np.iinfo(_INT_TYPES[dtype])
    lo, hi = (max(info.min, -128), min(info.max, 127)) if dtype == "INT32" else (info.min, info.max)
    return rng.integers(lo, hi + 1, size=shape).astype(info.dtype)


def _arduino_fqbn(ctx: dict[str, Any], scheme: str | None) -> str:
    ard = ctx["arduino"]
    options = dict(ard["options"])
    if scheme:
        options["PartitionScheme"] = scheme
    return ard["fqbn"] + (":" + ",".join(f"{k}={v}" for k, v in options.items()) if options else "")


def _write(path: Path, text: str, files: list[Path]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, text)
    files.append(path)


def _common_sources(ctx: dict[str, Any], dest: Path, ext: str, files: list[Path]) -> None:
    for template, name in _COMMON:
        _write(dest / name.replace(".cc", ext), render(template, ctx), files)
    for name in _STATIC:
        target = dest / name.replace(".cc", ext)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(templates_dir() / "common" / name, target)
        files.append(target)


def _platformio(ctx: dict[str, Any], dest: Path, files: list[Path]) -> None:
    pio = ctx["platformio"]
    espidf = pio["framework"] == "espidf"
    c = {**ctx, "framework": pio["framework"], "env_name": ctx["env_name"], "upload_speed": ctx["upload_speed"]}
    _write(dest / "platformio.ini", render("platformio/platformio.ini.j2", c), files)
    if espidf:
        _write(dest / "CMakeLists.txt", render("platformio/CMakeLists.txt.j2", c), files)
        _write(dest / "sdkconfig.defaults", render("platformio/sdkconfig.defaults.j2", c), files)
        _write(dest / "partitions.csv", render("platformio/partitions.csv.j2", c), files)
        src = dest / "src"
        _write(src / "CMakeLists.txt", render("platformio/src/CMakeLists.txt.j2", c), files)
        _write(src / "idf_component.yml", render("platformio/src/idf_component.yml.j2", c), files)
        _write(src / "main.cc", render("platformio/src/main.cc.j2", c), files)
        _write(src / "tinyflow_platform_espidf.cc", render("platformio/src/tinyflow_platform_espidf.cc.j2", c), files)
        _common_sources(c, src, ".cc", files)
    else:
        src = dest / "src"
        _write(src / "main.cpp", render("arduino/sketch.ino.j2", c), files)
        _write(src / "tinyflow_platform_arduino.cpp", render("arduino/tinyflow_platform_arduino.cpp.j2", c), files)
        _common_sources(c, src, ".cpp", files)


def _arduino(ctx: dict[str, Any], dest: Path, files: list[Path]) -> None:
    sketch = ctx["arduino"]["sketch"]
    folder = dest / sketch
    _write(folder / f"{sketch}.ino", render("arduino/sketch.ino.j2", ctx), files)
    _write(folder / "tinyflow_platform_arduino.cpp", render("arduino/tinyflow_platform_arduino.cpp.j2", ctx), files)
    _common_sources(ctx, folder, ".cpp", files)
    _write(folder / "README.md", render("arduino/README.md.j2", {**ctx, "sketch": sketch}), files)
    if "@" in ctx["arduino"]["core"]:
        _write(folder / "sketch.yaml", render("arduino/sketch.yaml.j2", ctx), files)
    partition = ctx["partition"]
    if partition and partition["arduino_scheme"] == "custom":
        _write(folder / "partitions.csv", render("platformio/partitions.csv.j2", ctx), files)


# A keep-tensors build (TINYFLOW_KEEP_TENSORS: TFLM's preserve-all-tensors interpreter, for `measure
# --per-layer`) gives every tensor its own space, and TFLM's preserve-all mode allocates more besides (on the
# host: an MLP of 2,440 B needs 10,176 B). tinyflow does not model that mode exactly, so the arena is a
# generous estimate, checked on the host against the real interpreter's smallest preserve-all arena; if a
# board's is still short, its HELLO says by how much (the set-up status).
KEEP_TENSORS_SLACK_BYTES = 16 * 1024


def keep_tensors_arena(graph: ModelGraph, bp: BoardPlan) -> int:
    every_tensor = sum((t.bytes + 15) // 16 * 16 for sg in graph.subgraphs for t in sg.tensors
                       if t.is_activation and t.index in sg.used_tensors)
    return 2 * bp.memory.min_arena_bytes + every_tensor + KEEP_TENSORS_SLACK_BYTES + bp.board.arena_margin_bytes


def _keep_tensors(ctx: dict[str, Any], graph: ModelGraph, bp: BoardPlan) -> None:
    board, need = bp.board, keep_tensors_arena(graph, bp)
    if need <= board.arena_sram_bytes:
        region = "sram"
    elif need <= board.psram_bytes:
        region = "psram"
    else:
        room = board.arena_sram_bytes + board.psram_bytes
        raise InputError(f"a --keep-tensors build of this model needs an arena of about {need:,} B, more than "
                         f"{board.id} has ({room:,} B of SRAM and PSRAM for it); compare per layer on the "
                         "simulated board instead (tinyflow measure --per-layer without --port)")
    ctx["arena"] = {**ctx["arena"], "bytes": need, "psram": region == "psram", "region": region}
    ctx["keep_tensors"] = True


def build_context(graph: ModelGraph, tflite: bytes, bp: BoardPlan, model_name: str,
                  labels: list[str] | None = None, self_test: SelfTest | None = None,
                  keep_tensors: bool = False) -> dict[str, Any]:
    ctx = context(graph, tflite, bp, model_name, labels, self_test)
    ctx["keep_tensors"] = False
    if keep_tensors:
        _keep_tensors(ctx, graph, bp)
    board, budget = bp.board, bp.budget
    index, table = next(((i, t) for i, t in enumerate(board.partition_tables) if t.name == budget.partition_table),
                        (None, None))
    if table is not None and table.csv is not None:
        # The rows are written as they are: checked again here, since a CSV row has no escaping.
        problem = partition_rows_problem(table.csv)
        if problem:
            raise UnsafeText(f"partition_tables[{index}].csv {problem}")
    ctx["partition"] = None if table is None or table.csv is None else {
        "name": comment_text(table.name), "app_bytes": table.app_bytes, "csv": table.csv.strip(),
        "arduino_scheme": table.arduino_scheme}
    ctx["flash_total"] = budget.flash_total_bytes
    # PlatformIO's environment names are [a-z0-9_-]; '-' becomes '_' as it always did.
    ctx["env_name"] = re.sub(r"[^A-Za-z0-9_]", "_", board.id)
    ctx["upload_speed"] = None if board.upload_speed is None else c_uint32(board.upload_speed, "serial.upload_speed")
    if ctx["platformio"] is not None:
        ctx["platformio"]["lib_deps"] = list(board.platformio.lib_deps)
    if ctx["arduino"] is not None:
        scheme = table.arduino_scheme if table else None
        ctx["fqbn"] = _arduino_fqbn(ctx, scheme)
    ctx["arduino_include"] = board.arduino.include if board.arduino else None
    ctx["arduino_defines"] = [dict(zip(("name", "value"), macro(d, f"arduino.defines[{i}]"), strict=True))
                              for i, d in enumerate(board.arduino.defines if board.arduino else ())]
    ctx["arduino_libraries"] = list(board.arduino.libraries) if board.arduino else []
    return ctx


def write_project(dest: Path, graph: ModelGraph, tflite: bytes, bp: BoardPlan, model_name: str,
                  labels: list[str] | None = None, self_test: SelfTest | None = None,
                  keep_tensors: bool = False) -> FirmwareProject:
    """Write ``dest/platformio`` and ``dest/arduino/<sketch>`` (those the board describes) into ``dest``;
    ``keep_tensors``: the debug build that `measure --per-layer` reads every op's output from."""
    if not bp.fits:
        raise InputError(f"the model does not fit {bp.board.id}; run `tinyflow plan` to see why")
    files: list[Path] = []
    pio_dir = ard_dir = None
    try:
        ctx = build_context(graph, tflite, bp, model_name, labels, self_test, keep_tensors)
        if ctx["platformio"] is not None:
            pio_dir = dest / "platformio"
            _platformio(ctx, pio_dir, files)
        if ctx["arduino"] is not None:
            ard_dir = dest / "arduino" / ctx["arduino"]["sketch"]
            _arduino(ctx, dest / "arduino", files)
    except UnsafeText as e:
        # Only a Board built in code gets here: a board file with such a value is refused when it is loaded.
        raise InputError(f"{bp.board.source}: {e}; fix the board, nothing was generated") from None
    return FirmwareProject(dest, pio_dir, ard_dir, tuple(files))


def generate(graph: ModelGraph, tflite: bytes, bp: BoardPlan, out: str | Path, model_name: str,
             labels: list[str] | None = None, self_test: SelfTest | None = None,
             force: bool = False, keep_tensors: bool = False) -> FirmwareProject:
    """``tinyflow generate``: the projects in ``out``, all or nothing."""
    with OutputDir(out, force) as outdir:
        staging = outdir.path
        project = write_project(staging, graph, tflite, bp, model_name, labels, self_test, keep_tensors)
        root = outdir.publish()
    return relocate(project, staging, root)


def relocate(project: FirmwareProject, old: Path, new: Path) -> FirmwareProject:
    """The same project after its folder moved from ``old`` to ``new`` (an output directory's publish)."""

    def move(p: Path | None) -> Path | None:
        return None if p is None else new / p.relative_to(old)

    return FirmwareProject(new, move(project.platformio), move(project.arduino),
                           tuple(move(f) for f in project.files))
