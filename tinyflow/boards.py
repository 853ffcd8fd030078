"""Boards as data: load, validate and look up ``boards/*.toml`` into frozen ``Board`` records."""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError
from .paths import boards_dir, read_user_file

KERNEL_LIBRARIES = ("reference", "esp-nn", "cmsis-nn")
_ID_RE = re.compile(r"[a-z0-9][a-z0-9_.-]*")


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
    # The exact library versions the planner's kernel-library rules and the generated project's pins use,
    # e.g. "esp-tflite-micro 1.4.0 + esp-nn 1.2.3"; None: the library's default (plan/kernel_libraries.py).
    kernel_library_version: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *self.aliases)

    @property
    def max_app_bytes(self) -> int:
        return max(t.app_bytes for t in self.partition_tables)


# The schema. Every string a board gives reaches text some other program parses: platformio.ini (INI, and
# PlatformIO runs `extra_scripts` as Python), sdkconfig.defaults (Kconfig), partitions.csv, C preprocessor
# lines, sketch.yaml and shell lines in the README. Each field therefore has an allowed character set suited
# to what it is; nothing outside it (a line break above all) gets through. The generators escape again.
U32_MAX = 2**32 - 1  # sizes and constants are uint32 on a 32-bit MCU
BAUD_RANGE = (300, 10_000_000)
CPU_MHZ_RANGE = (1, 1000)
MAX_BOARD_FILE_BYTES = 256 * 1024
CONSOLES = ("usb_serial_jtag", "uart0", "usb_cdc", "pty")
PSRAM_MODES = ("oct", "quad")
FLASH_MODES = ("qio", "qout", "dio", "dout", "opi")  # ESP-IDF's CONFIG_ESPTOOLPY_FLASHMODE_* choices

_NAME = r"[A-Za-z0-9_.-]+"
# A PlatformIO package spec (platform or library): [owner/]name[@version range], or a URL. Registry names may
# hold single spaces ("Adafruit GFX Library"); nothing else that INI reads: no ';' or '#' (comments), '$'
# (PlatformIO's ${...} interpolation), quotes or line breaks.
_PIO_SPEC = re.compile(r"(?:[A-Za-z0-9_.-]+/)?[A-Za-z0-9_.+-]+(?: [A-Za-z0-9_.+-]+)*(?:@[A-Za-z0-9_.~^<>=*+,!-]+)?"
                       r"|(?:https?|git\+https?|file|symlink)://[A-Za-z0-9_.~:/?&=%+@,-]+")
_PIO_OPTION_KEY = re.compile(r"board_(?:build|upload)\.[a-z0-9_]+(?:\.[a-z0-9_]+)*|build_type|upload_protocol")
_PIO_OPTION_VALUE = re.compile(r"[A-Za-z0-9_.,:/@+=-]+(?: [A-Za-z0-9_.,:/@+=-]+)*")
_FQBN = re.compile(rf"{_NAME}:{_NAME}:{_NAME}")
_ARDUINO_CORE = re.compile(rf"{_NAME}:{_NAME}(?:@[A-Za-z0-9_.+-]+)?")
_ARDUINO_OPTION = re.compile(r"[A-Za-z0-9_.-]+")
_ARDUINO_LIBRARY = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.-]{0,62}(?:@[A-Za-z0-9_.+-]+)?")
_HEADER = re.compile(r"[A-Za-z0-9_-]+(?:/[A-Za-z0-9_-]+)*(?:\.[A-Za-z0-9_-]+)*\.(?:h|hpp)")
_DEFINE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:=[A-Za-z0-9_.+-]+)?")
_IDF_TARGET = re.compile(r"esp32[a-z0-9]{0,8}")
_SYMBOL = re.compile(r"[A-Za-z0-9_]{1,64}")
# "esp-tflite-micro 1.4.0 + esp-nn 1.2.3" (ESP-IDF component versions, which become idf_component.yml pins and C
# strings) or "CMSIS-NN 4ab83cc": which versions exist is the planner's registry's business, checked there.
_VERSION = r"[0-9]+\.[0-9]+\.[0-9]+(?:~[0-9]+)?"
_KERNEL_LIBRARY_VERSION = re.compile(rf"esp-tflite-micro {_VERSION} \+ esp-nn {_VERSION}|CMSIS-NN [0-9a-f]{{7,40}}")
_VID_PID = re.compile(r"([0-9A-Fa-f]{4}):([0-9A-Fa-f]{4})")
# ESP-IDF partition table rows: Name, Type, SubType, Offset, Size[, Flags] (gen_esp32part.py).
_PART_NAME = re.compile(r"[A-Za-z0-9_]{1,16}")
_PART_TYPE = re.compile(r"app|data|bootloader|partition_table|0x[0-9A-Fa-f]{1,2}|[0-9]{1,3}")
_PART_SUBTYPE = re.compile(r"[A-Za-z0-9_]{0,32}")
_PART_NUMBER = re.compile(r"(?:0x[0-9A-Fa-f]{1,8}|[0-9]{1,10})[KkMm]?")
_PART_FLAGS = re.compile(r"(?:encrypted|readonly)(?::(?:encrypted|readonly))?|")
MAX_PARTITION_ROWS = 64


def _show(value: Any, limit: int = 60) -> str:
    """A value quoted for a one-line message: repr escapes line breaks; long values are cut."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "...'"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_.]+(?:\[[0-9]+\])?", key) else _show(key)


def _printable(text: str) -> bool:
    # isprintable() refuses control, format and line/paragraph-separator characters (U+2028 too).
    return text.isprintable()


def partition_rows_problem(csv: str) -> str | None:
    """Why ``csv`` is not rows of an ESP-IDF partition table, or None. Shared with the generator, which checks
    again before writing partitions.csv."""
    lines = [ln.strip() for ln in csv.split("\n")]
    rows = [ln for ln in lines if ln and not ln.startswith("#")]
    if not rows:
        return "has no rows"
    if len(rows) > MAX_PARTITION_ROWS:
        return f"has {len(rows)} rows, more than {MAX_PARTITION_ROWS}"
    for n, line in enumerate(lines, 1):
        if not line or (line.startswith("#") and _printable(line)):
            continue
        if not re.fullmatch(r"[A-Za-z0-9_, :]+", line.replace("\t", " ")):
            return (f"line {n} {_show(line)} holds a character a partition row cannot have (letters, digits, "
                    "'_', ',', ':' and spaces only)")
        fields = [f.strip() for f in line.split(",")]
        if fields[-1] == "" and len(fields) == 7:  # a trailing comma after the flags
            fields = fields[:-1]
        if len(fields) not in (5, 6):
            return f"line {n} {_show(line)} has {len(fields)} fields, not Name, Type, SubType, Offset, Size[, Flags]"
        name, kind, subtype, offset, size, *flags = fields
        checks = [(_PART_NAME, name, "name (letters, digits, '_', at most 16)"),
                  (_PART_TYPE, kind, "type (app, data or a number)"), (_PART_SUBTYPE, subtype, "subtype"),
                  (_PART_NUMBER, size, "size (0x... or decimal, optional K/M)"),
                  (_PART_FLAGS, flags[0] if flags else "", "flags (encrypted, readonly)")]
        if offset:
            checks.append((_PART_NUMBER, offset, "offset (0x... or decimal, optional K/M)"))
        for pattern, value, what in checks:
            if not pattern.fullmatch(value):
                return f"line {n}: {_show(value)} is not a partition {what}"
    return None


class _Fields:
    """Reads one TOML table, remembering which keys were used so that typos are reported. Every reader checks
    the type, then the range or the allowed characters, and names the field and the fix when it refuses."""

    def __init__(self, data: Any, where: str, source: Path):
        if not isinstance(data, dict):
            raise InputError(f"{source}: {where.rstrip('.') or 'the file'} must be a table, not {_show(data)}")
        self.data, self.where, self.source, self.used = data, where, source, set()

    def fail(self, key: str, problem: str) -> InputError:
        return InputError(f"{self.source}: {self.where}{_key(key)} {problem}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.data:
            if default is ...:
                raise self.fail(key, "is missing; add it (see boards/esp32s3-devkitc-1-n8r8.toml)")
            return default
        value = self.data[key]
        # bool is an int in Python; a board field that wants a number must not accept true/false.
        if (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
            raise self.fail(key, f"must be {_kind_name(kind)}, not {_show(value)}")
        return value

    def integer(self, key: str, lo: int, hi: int, default: Any = ...) -> Any:
        value = self.get(key, int, default)
        if value is not None and not lo <= value <= hi:
            raise self.fail(key, f"is {value}, outside {lo:,}..{hi:,}; give a value in that range")
        return value

    def number(self, key: str, lo: float, hi: float, default: Any = ...) -> float:
        value = self.get(key, (int, float), default)
        # TOML allows nan and inf; they would reach the latency estimate and plan --json (which is not JSON then).
        if not math.isfinite(value) or not lo <= value <= hi:
            raise self.fail(key, f"is {value}, outside {lo:g}..{hi:g}; give a finite number in that range")
        return float(value)

    def text(self, key: str, pattern: re.Pattern[str] | None, what: str, default: Any = ..., *,
             max_len: int = 64) -> Any:
        value = self.get(key, str, default)
        if value is None:
            return None
        return _check_text(value, pattern, what, max_len, lambda p: self.fail(key, p))

    def choice(self, key: str, choices: tuple[str, ...], default: Any = ...) -> Any:
        value = self.get(key, str, default)
        if value is not None and value not in choices:
            raise self.fail(key, f"{_show(value)} must be one of {', '.join(choices)}")
        return value

    def texts(self, key: str, pattern: re.Pattern[str] | None, what: str, *, max_items: int = 32,
              max_len: int = 64) -> tuple[str, ...]:
        values = self.get(key, list, [])
        if len(values) > max_items:
            raise self.fail(key, f"has {len(values)} entries, more than {max_items}")
        out = []
        for i, v in enumerate(values):
            def fail(problem: str, i: int = i) -> InputError:
                return self.fail(f"{key}[{i}]", problem)
            if not isinstance(v, str):
                raise fail(f"must be a string, not {_show(v)}")
            out.append(_check_text(v, pattern, what, max_len, fail))
        return tuple(out)

    def table(self, key: str, default: Any = ...) -> _Fields | None:
        value = self.get(key, dict, default)
        return None if value is None else _Fields(value, f"{self.where}{key}.", self.source)

    def string_table(self, key: str, key_pattern: re.Pattern[str], key_what: str, value_pattern: re.Pattern[str],
                     value_what: str) -> dict[str, str]:
        table = self.get(key, dict, {})
        if len(table) > 32:
            raise self.fail(key, f"has {len(table)} entries, more than 32")
        out = {}
        for k, v in table.items():
            def fail(problem: str, k: str = k) -> InputError:
                return InputError(f"{self.source}: {self.where}{key}.{_key(k)} {problem}")
            if not key_pattern.fullmatch(k):
                raise fail(f"is not {key_what}")
            if isinstance(v, bool) or not isinstance(v, str | int):
                raise fail(f"must be a string or an integer, not {_show(v)}")
            out[k] = _check_text(str(v), value_pattern, value_what, 128, fail)
        return out

    def finish(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise self.fail(unknown[0], "is not a known board field; check its spelling")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false", dict: "a table",
             list: "a list"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return "a number" if set(kinds) == {int, float} else " or ".join(names.get(k, k.__name__) for k in kinds)


def _check_text(value: str, pattern: re.Pattern[str] | None, what: str, max_len: int, fail: Any) -> str:
    if not value or len(value) > max_len:
        raise fail(f"{_show(value)} must be 1 to {max_len} characters long")
    # fullmatch, not match(...$): '$' also matches before a trailing line break.
    if (pattern is None and not _printable(value)) or (pattern is not None and not pattern.fullmatch(value)):
        raise fail(f"{_show(value)} is not {what}; fix the board file")
    return value


def _usb_id(text: Any, i: int, source: Path) -> tuple[int, int]:
    m = _VID_PID.fullmatch(text) if isinstance(text, str) else None
    if not m:
        raise InputError(f"{source}: serial.usb_ids[{i}] {_show(text)} is not VID:PID in hex, e.g. \"303A:1001\"")
    return int(m.group(1), 16), int(m.group(2), 16)


_PRINTABLE = "printable text on one line"


def _partition_tables(top: _Fields, flash_bytes: int, source: Path) -> tuple[PartitionTable, ...]:
    raw_tables = top.get("partition_tables", list)
    if not raw_tables:
        raise InputError(f"{source}: partition_tables is empty; add at least one [[partition_tables]] entry")
    if len(raw_tables) > 16:
        raise InputError(f"{source}: partition_tables has {len(raw_tables)} entries, more than 16")
    tables = []
    for i, raw in enumerate(raw_tables):
        if not isinstance(raw, dict):
            raise InputError(f"{source}: partition_tables[{i}] must be a table ([[partition_tables]] with name, "
                             f"app_bytes, ...), not {_show(raw)}")
        t = _Fields(raw, f"partition_tables[{i}].", source)
        table = PartitionTable(
            name=t.text("name", re.compile(_NAME), "a table name (letters, digits, '_', '.', '-')"),
            app_bytes=t.integer("app_bytes", 1, flash_bytes),
            arduino_scheme=t.text("arduino_scheme", _SYMBOL, "an Arduino PartitionScheme id (letters, digits, '_')",
                                  None),
            csv=t.get("csv", str, None),
        )
        if table.csv is not None:
            if len(table.csv) > 8192:
                raise t.fail("csv", "is longer than 8192 characters")
            problem = partition_rows_problem(table.csv)
            if problem:
                raise t.fail("csv", f"{problem}; give ESP-IDF partition rows (Name, Type, SubType, Offset, Size, "
                                    "Flags)")
        t.finish()
        tables.append(table)
    return tuple(tables)


def parse_board(data: dict[str, Any], source: Path) -> Board:
    top = _Fields(data, "", source)
    board_id = top.text("id", _ID_RE, "lower-case letters, digits, '-', '_' or '.' (starting with a letter or digit)")
    kernel_library = top.choice("kernel_library", KERNEL_LIBRARIES)
    pointer_bytes = top.get("pointer_bytes", int)
    if pointer_bytes not in (4, 8):
        raise InputError(f"{source}: pointer_bytes must be 4 (32-bit MCU) or 8 (64-bit host)")
    simulated = top.get("simulated", bool, False)
    # The simulated board has no fixed clock (0); a real one needs its frequency for the latency estimate.
    cpu_mhz = top.integer("cpu_mhz", 0 if simulated else CPU_MHZ_RANGE[0], CPU_MHZ_RANGE[1])

    mem = top.table("memory")
    sram_bytes = mem.integer("sram_bytes", 1, U32_MAX)
    flash_bytes = mem.integer("flash_bytes", 1, U32_MAX)
    tables = _partition_tables(top, flash_bytes, source)

    pio = None
    p = top.table("platformio", None)
    if p is not None:
        spec = "a PlatformIO package spec ([owner/]name[@version] or an https:// URL; no ';', '#', '$' or quotes)"
        framework = p.choice("framework", ("espidf", "arduino"))
        pio = PlatformIOSpec(
            p.text("platform", _PIO_SPEC, spec, max_len=256),
            p.text("board", re.compile(_NAME), "a PlatformIO board id (letters, digits, '_', '.', '-')"),
            framework,
            p.string_table("options", _PIO_OPTION_KEY, "an option tinyflow passes through (board_build.*, "
                           "board_upload.*, build_type, upload_protocol; nothing that runs scripts)",
                           _PIO_OPTION_VALUE, "a plain option value (letters, digits, '_.,:/@+=-', single spaces)"),
            p.texts("lib_deps", _PIO_SPEC, spec, max_len=256))
        p.finish()
    arduino = None
    a = top.table("arduino", None)
    if a is not None:
        arduino = ArduinoSpec(
            a.text("fqbn", _FQBN, "an FQBN vendor:arch:board (menu options go in arduino.options)", max_len=128),
            a.text("core", _ARDUINO_CORE, "a core vendor:arch[@version], e.g. \"esp32:esp32@3.3.11\"", max_len=128),
            a.string_table("options", _ARDUINO_OPTION, "an Arduino menu id (letters, digits, '_', '.', '-')",
                           _ARDUINO_OPTION, "an Arduino menu value (letters, digits, '_', '.', '-')"),
            a.text("pio_platform", _PIO_SPEC, "a PlatformIO platform spec (name[@version] or an https:// URL)", None,
                   max_len=256),
            a.text("pio_board", re.compile(_NAME), "a PlatformIO board id (letters, digits, '_', '.', '-')", None),
            a.text("include", _HEADER, "a header path like \"TFLIteMicro.h\" (letters, digits, '_', '-', '.', "
                   "'/', ending .h)", None, max_len=128),
            a.texts("defines", _DEFINE, "NAME or NAME=value (a C identifier; the value letters, digits, '_.+-')"),
            a.texts("libraries", _ARDUINO_LIBRARY, "an Arduino library name[@version] (letters, digits, spaces, "
                    "'_', '.', '-')", max_len=96))
        a.finish()

    fw = top.table("firmware")
    latency = None
    lat = top.table("latency", None)
    if lat is not None:
        # Cycle figures are per MAC, read or op; scale multiplies the whole estimate.
        limits = {"op_overhead_cycles": (0, 1e9), "scale": (1e-3, 1e3)}
        latency = LatencyModel(*(lat.number(f, *limits.get(f, (0, 1e4))) for f in LatencyModel.__dataclass_fields__))
        lat.finish()
    serial = top.table("serial")
    usb_ids = serial.get("usb_ids", list, [])
    if len(usb_ids) > 32:
        raise serial.fail("usb_ids", f"has {len(usb_ids)} entries, more than 32")

    board = Board(
        id=board_id,
        name=top.text("name", None, _PRINTABLE, max_len=100),
        aliases=top.texts("aliases", _ID_RE, "a lower-case name like \"esp32s3\" (letters, digits, '-', '_', '.')"),
        mcu=top.text("mcu", None, _PRINTABLE),
        core=top.text("core", None, _PRINTABLE),
        cpu_mhz=cpu_mhz,
        pointer_bytes=pointer_bytes,
        kernel_library=kernel_library,
        simulated=simulated,
        idf_target=top.text("idf_target", _IDF_TARGET, "an ESP-IDF target like \"esp32s3\"", None, max_len=16),
        sram_bytes=sram_bytes,
        arena_sram_bytes=mem.integer("arena_sram_bytes", 1, sram_bytes),
        psram_bytes=mem.integer("psram_bytes", 0, U32_MAX, 0),
        psram_mode=mem.choice("psram_mode", PSRAM_MODES, None),
        flash_bytes=flash_bytes,
        flash_mode=mem.choice("flash_mode", FLASH_MODES, None),
        # The margin is allocator slack added to the planned arena, not a second arena.
        arena_margin_bytes=mem.integer("arena_margin_bytes", 0, 1024 * 1024, 0),
        psram_latency_factor=mem.number("psram_latency_factor", 1.0, 100.0, 1.0),
        partition_tables=tables,
        usb_ids=tuple(_usb_id(u, i, source) for i, u in enumerate(usb_ids)),
        console=serial.choice("console", CONSOLES),
        upload_speed=serial.integer("upload_speed", *BAUD_RANGE, None),
        monitor_speed=serial.integer("monitor_speed", *BAUD_RANGE, 115200),
        platformio=pio,
        arduino=arduino,
        firmware_base_bytes=fw.integer("base_bytes", 0, U32_MAX),
        firmware_per_op_bytes=fw.integer("per_op_bytes", 0, 16 * 1024 * 1024),
        latency=latency,
        source=source,
        kernel_library_version=top.text(
            "kernel_library_version", _KERNEL_LIBRARY_VERSION, "exact versions like \"esp-tflite-micro 1.4.0 + "
            "esp-nn 1.2.3\" (ESP-NN) or \"CMSIS-NN 4ab83cc\"", None, max_len=80),
    )
    for f in (top, mem, serial, fw):
        f.finish()
    v = board.kernel_library_version
    if v is not None and (v.startswith("CMSIS-NN") != (kernel_library == "cmsis-nn")
                          or (v.startswith("esp-tflite-micro") and board.idf_target is None)):
        raise InputError(f"{source}: kernel_library_version \"{v}\" does not name {kernel_library} kernels"
                         f"{'' if board.idf_target else ' on an ESP-IDF board (no idf_target)'}; give the versions of "
                         "the board's kernel_library, or leave the field out for tinyflow's default")
    if pio is not None and pio.framework == "espidf" and board.idf_target is None:
        raise InputError(f"{source}: platformio.framework is \"espidf\" but idf_target is missing; add it "
                         "(e.g. idf_target = \"esp32s3\")")
    return board


def load_board_file(path: str | Path) -> Board:
    path = Path(path)
    try:
        text = read_user_file(path, "board file", MAX_BOARD_FILE_BYTES).decode("utf-8-sig")  # Notepad writes a BOM
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: the board file is not UTF-8 text ({e.reason} at byte {e.start}); save it as "
                         "UTF-8") from None
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
