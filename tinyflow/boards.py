"""Boards as data: load, validate and look up ``boards/*.toml`` into frozen ``Board`` records."""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .paths import boards_dir

KERNEL_LIBRARIES = ("reference", "esp-nn", "cmsis-nn")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")


@dataclass(frozen=True)
class PartitionTable:
    name: str
    app_bytes: int
    arduino_scheme: str | None = None
    csv: str | None = None  # rows written as the project's partitions.csv


@dataclass(frozen=True)
class PlatformIOSpec:
    platform: str
    board: str
    framework: str  # "espidf" or "arduino"
    options: dict[str, str] = field(default_factory=dict)
    lib_deps: tuple[str, ...] = ()


@dataclass(frozen=True)
class ArduinoSpec:
    fqbn: str
    core: str  # "vendor:arch@version" as arduino-cli installs it
    options: dict[str, str] = field(default_factory=dict)
    pio_platform: str | None = None
    pio_board: str | None = None
    include: str | None = None  # the TFLM library's header the sketch must name
    defines: tuple[str, ...] = ()  # must match how the TFLM library was compiled
    libraries: tuple[str, ...] = ()  # Arduino libraries to install


@dataclass(frozen=True)
class LatencyModel:
    """Per-op-type cost figures for the latency estimate (see latency.py); all values are estimates."""

    pointwise_cycles_per_mac: float  # 1x1 convolutions
    conv_cycles_per_mac: float  # KxK convolutions over fewer than 8 input channels (first layers)
    wide_conv_cycles_per_mac: float  # KxK convolutions over 8 or more input channels
    depthwise_cycles_per_mac: float
    fc_cycles_per_mac: float
    pool_cycles_per_read: float
    element_cycles: float
    op_overhead_cycles: float
    scale: float


@dataclass(frozen=True)
class Board:
    id: str
    name: str
    aliases: tuple[str, ...]
    mcu: str
    core: str
    cpu_mhz: int
    pointer_bytes: int
    kernel_library: str
    simulated: bool
    idf_target: str | None
    sram_bytes: int
    arena_sram_bytes: int
    psram_bytes: int
    psram_mode: str | None
    flash_bytes: int
    flash_mode: str | None
    arena_margin_bytes: int
    psram_latency_factor: float
    partition_tables: tuple[PartitionTable, ...]
    usb_ids: tuple[tuple[int, int], ...]
    console: str
    upload_speed: int | None
    monitor_speed: int
    platformio: PlatformIOSpec | None
    arduino: ArduinoSpec | None
    firmware_base_bytes: int
    firmware_per_op_bytes: int
    latency: LatencyModel | None
    source: Path

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    @property
    def max_app_bytes(self) -> int:
        return max(t.app_bytes for t in self.partition_tables)


class _Fields:
    """Reads one TOML table, remembering which keys were used so that typos are reported."""

    def __init__(self, data: dict[str, Any], where: str, source: Path):
        self.data, self.where, self.source, self.used = data, where, source, set()

    def _fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{self.source}: {self.where}{key} {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ..., *, minimum: float | None = None):
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self._fail(key, "is missing; add it (see boards/esp32s3-devkitc-1-n8r8.toml)")
            return default
        value = self.data[key]
        # bool is an int in Python; a board field that wants a number must not accept true/false.
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
            raise self._fail(key, f"must be a {names}, not {value!r}")
        if minimum is not None and value < minimum:
            raise self._fail(key, f"must be >= {minimum}, not {value!r}")
        return value

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self._fail(unknown[0], "is not a known board field; check its spelling")


def _usb_id(text: str, source: Path) -> tuple[int, int]:
    m = re.fullmatch(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})", text)
    if not m:
        raise InputError(f"{source}: serial.usb_ids entry {text!r} is not VID:PID in hex, e.g. \"303A:1001\"")
    return int(m.group(1), 16), int(m.group(2), 16)


def _str_dict(value: Any, where: str, source: Path) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str | int) for v in value.values()):
        raise InputError(f"{source}: {where} must be a table of strings")
    return {str(k): str(v) for k, v in value.items()}


def parse_board(data: dict[str, Any], source: Path) -> Board:
    top = _Fields(data, "", source)
    board_id = top.get("id", str)
    if not _ID_RE.match(board_id):
        raise InputError(f"{source}: id {board_id!r} must be lower case letters, digits, '-', '_' or '.'")
    kernel_library = top.get("kernel_library", str)
    if kernel_library not in KERNEL_LIBRARIES:
        raise InputError(f"{source}: kernel_library {kernel_library!r} must be one of {', '.join(KERNEL_LIBRARIES)}")
    pointer_bytes = top.get("pointer_bytes", int)
    if pointer_bytes not in (4, 8):
        raise InputError(f"{source}: pointer_bytes must be 4 (32-bit MCU) or 8 (64-bit host)")

    mem = _Fields(top.get("memory", dict), "memory.", source)
    serial = _Fields(top.get("serial", dict), "serial.", source)
    tables = []
    for i, raw in enumerate(top.get("partition_tables", list)):
        t = _Fields(raw, f"partition_tables[{i}].", source)
        tables.append(PartitionTable(
            name=t.get("name", str),
            app_bytes=t.get("app_bytes", int, minimum=1),
            arduino_scheme=t.get("arduino_scheme", str, None),
            csv=t.get("csv", str, None),
        ))
        t.finish()
    if not tables:
        raise InputError(f"{source}: partition_tables is empty; add at least one [[partition_tables]] entry")

    pio = None
    if "platformio" in data:
        p = _Fields(top.get("platformio", dict), "platformio.", source)
        framework = p.get("framework", str)
        if framework not in ("espidf", "arduino"):
            raise InputError(f"{source}: platformio.framework {framework!r} must be \"espidf\" or \"arduino\"")
        pio = PlatformIOSpec(p.get("platform", str), p.get("board", str), framework,
                             _str_dict(p.get("options", dict, {}), "platformio.options", source),
                             tuple(p.get("lib_deps", list, [])))
        p.finish()
    arduino = None
    if "arduino" in data:
        a = _Fields(top.get("arduino", dict), "arduino.", source)
        arduino = ArduinoSpec(a.get("fqbn", str), a.get("core", str),
                              _str_dict(a.get("options", dict, {}), "arduino.options", source),
                              a.get("pio_platform", str, None), a.get("pio_board", str, None),
                              a.get("include", str, None), tuple(a.get("defines", list, [])),
                              tuple(a.get("libraries", list, [])))
        a.finish()

    fw = _Fields(top.get("firmware", dict), "firmware.", source)
    latency = None
    if "latency" in data:
        lat = _Fields(top.get("latency", dict), "latency.", source)
        latency = LatencyModel(*(float(lat.get(f, (int, float), minimum=0)) for f in LatencyModel.__dataclass_fields__))
        lat.finish()

    board = Board(
        id=board_id,
        name=top.get("name", str),
        aliases=tuple(top.get("aliases", list, [])),
        mcu=top.get("mcu", str),
        core=top.get("core", str),
        cpu_mhz=top.get("cpu_mhz", int, minimum=0),
        pointer_bytes=pointer_bytes,
        kernel_library=kernel_library,
        simulated=top.get("simulated", bool, False),
        idf_target=top.get("idf_target", str, None),
        sram_bytes=mem.get("sram_bytes", int, minimum=1),
        arena_sram_bytes=mem.get("arena_sram_bytes", int, minimum=1),
        psram_bytes=mem.get("psram_bytes", int, 0, minimum=0),
        psram_mode=mem.get("psram_mode", str, None),
        flash_bytes=mem.get("flash_bytes", int, minimum=1),
        flash_mode=mem.get("flash_mode", str, None),
        arena_margin_bytes=mem.get("arena_margin_bytes", int, 0, minimum=0),
        psram_latency_factor=float(mem.get("psram_latency_factor", (int, float), 1.0, minimum=1.0)),
        partition_tables=tuple(tables),
        usb_ids=tuple(_usb_id(u, source) for u in serial.get("usb_ids", list, [])),
        console=serial.get("console", str),
        upload_speed=serial.get("upload_speed", int, None),
        monitor_speed=serial.get("monitor_speed", int, 115200, minimum=1),
        platformio=pio,
        arduino=arduino,
        firmware_base_bytes=fw.get("base_bytes", int, minimum=0),
        firmware_per_op_bytes=fw.get("per_op_bytes", int, minimum=0),
        latency=latency,
        source=source,
    )
    for f in (top, mem, serial, fw):
        f.finish()
    if not all(isinstance(a, str) and _ID_RE.match(a) for a in board.aliases):
        raise InputError(f"{source}: aliases must be lower-case names like \"esp32s3\"")
    return board


def load_board_file(path: str | Path) -> Board:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: board file not found; check the path given to --board-file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot read the board file ({e})") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"{path}: not valid TOML ({e}); fix the syntax") from None
    return parse_board(data, path)


def all_boards(extra_files: tuple[str | Path, ...] = ()) -> list[Board]:
    """The shipped boards plus any ``--board-file``; a later file with the same id replaces the earlier one."""
    boards: dict[str, Board] = {}
    for path in [*sorted(boards_dir().glob("*.toml")), *map(Path, extra_files)]:
        board = load_board_file(path)
        boards[board.id] = board
    return list(boards.values())


def find_board(name: str, extra_files: tuple[str | Path, ...] = ()) -> Board:
    """The board whose id or alias is ``name`` (case-insensitive); an unknown name lists the known ones."""
    boards = all_boards(extra_files)
    wanted = name.strip().lower()
    for board in boards:
        if wanted in board.names:
            return board
    known = ", ".join(sorted(n for b in boards for n in b.names))
    raise InputError(f"unknown board {name!r}; known boards: {known} (or add one with --board-file PATH)")
