"""Hostile board files and labels (from a fuzz campaign): the schema refuses them with one line naming the file
and the field, and the generators keep each board string inside its format even for a Board built in code."""

from __future__ import annotations

import configparser
import copy
import dataclasses
import json
import math
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from tinyflow.boards import Board, find_board, load_board_file
from tinyflow.errors import InputError
from tinyflow.firmware.project import generate
from tinyflow.graph.reader import read_graph
from tinyflow.paths import boards_dir
from tinyflow.plan.assessment import assess

REPO = Path(__file__).resolve().parent.parent
PWN = "extra_scripts = pre:PWN.py"


# --- a TOML writer for the test's board dictionaries (tomllib reads only) ---------------------------------

def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a TOML basic string for the characters used here
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml_value, v)) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def _toml_key(k: str) -> str:
    return k if re.fullmatch(r"[A-Za-z0-9_-]+", k) else json.dumps(k)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    lines, tables, arrays = [], [], []
    for k, v in data.items():
        if isinstance(v, dict) and prefix.count(".") < 1:
            tables.append((k, v))
        elif isinstance(v, list) and v and all(isinstance(x, dict) for x in v):
            arrays.append((k, v))
        else:
            lines.append(f"{_toml_key(k)} = {_toml_value(v)}")
    for k, v in tables:
        lines += [f"[{prefix}{_toml_key(k)}]", to_toml(v, f"{prefix}{_toml_key(k)}.")]
    for k, items in arrays:
        for item in items:
            lines += [f"[[{prefix}{_toml_key(k)}]]", to_toml(item, f"{prefix}{_toml_key(k)}.")]
    return "\n".join(lines) + "\n"


def base_board() -> dict[str, Any]:
    """The shipped ESP32-S3 board (every section: PlatformIO, Arduino, latency) as a new board "hostile"."""
    data = tomllib.loads((boards_dir() / "esp32s3-devkitc-1-n8r8.toml").read_text())
    data["id"], data["aliases"] = "hostile", []
    data["platformio"]["lib_deps"] = ["espressif/esp-nn@^1.2.3"]
    return data


def _set(path: str, value: Any):
    """An edit that sets ``a/0/b`` in the board dictionary ('/' since option keys hold dots)."""
    def edit(data: dict[str, Any]) -> None:
        parts = [int(p) if p.isdigit() else p for p in path.split("/")]
        node = data
        for p in parts[:-1]:
            node = node[p]
        node[parts[-1]] = value
    return edit


def _append_csv(row: str):
    def edit(data: dict[str, Any]) -> None:
        data["partition_tables"][0]["csv"] += row
    return edit


# (case, edit, the field the one-line error must name)
HOSTILE = [
    # 1. strings that would add lines to platformio.ini, sdkconfig.defaults, partitions.csv, C, YAML, shell
    ("pio-platform-newline", _set("platformio/platform", f"espressif32@6.13.0\n{PWN}"), "platformio.platform"),
    ("pio-board-newline", _set("platformio/board", f"esp32-s3-devkitc-1\n{PWN}"), "platformio.board"),
    ("pio-option-value-newline", _set("platformio/options/board_build.flash_mode", f"qio\n{PWN}"),
     "platformio.options.board_build.flash_mode"),
    ("pio-option-key-newline", _set("platformio/options", {f"board_build.x\n{PWN}": "1"}), "platformio.options"),
    ("pio-option-runs-scripts", _set("platformio/options", {"extra_scripts": "pre:PWN.py"}),
     "platformio.options.extra_scripts"),
    ("pio-option-interpolation", _set("platformio/options", {"board_build.x": "${sysenv.HOME}"}),
     "platformio.options.board_build.x"),
    ("pio-lib-deps-newline", _set("platformio/lib_deps", [f"foo\n{PWN}"]), "platformio.lib_deps[0]"),
    ("pio-lib-deps-comment", _set("platformio/lib_deps", ["foo ; bar"]), "platformio.lib_deps[0]"),
    ("idf-target-newline", _set("idf_target", 'esp32s3"\nCONFIG_BOOTLOADER_X=y'), "idf_target"),
    ("flash-mode-newline", _set("memory/flash_mode", "qio=y\nCONFIG_X"), "memory.flash_mode"),
    ("psram-mode-newline", _set("memory/psram_mode", "oct=y\nCONFIG_X"), "memory.psram_mode"),
    ("partition-name-newline", _set("partition_tables/0/name", "app\nevil, app, factory, 0x10000, 1M,"),
     "partition_tables[0].name"),
    ("partition-csv-quote", _append_csv('evil, app, factory, 0x10000, 0x1000, "$(x)"\n'), "partition_tables[0].csv"),
    ("partition-csv-fields", _set("partition_tables/0/csv", "nvs, data\n"), "partition_tables[0].csv"),
    ("partition-csv-long-name", _append_csv("a_name_of_twenty_chars, app, ota_2, , 0x1000,\n"),
     "partition_tables[0].csv"),
    ("include-newline", _set("arduino/include", "TFLIteMicro.h>\n#error pwned"), "arduino.include"),
    ("define-newline", _set("arduino/defines", ["TF_LITE_STATIC_MEMORY\n#error pwned"]), "arduino.defines[0]"),
    ("define-comment", _set("arduino/defines", ["A=1 /* x */"]), "arduino.defines[0]"),
    ("fqbn-shell", _set("arduino/fqbn", "esp32:esp32:esp32s3; touch PWNED"), "arduino.fqbn"),
    ("arduino-option-shell", _set("arduino/options/PSRAM", "opi$(touch PWNED)"), "arduino.options.PSRAM"),
    ("core-shell", _set("arduino/core", "esp32:esp32@3.3.11 && touch PWNED"), "arduino.core"),
    ("library-shell", _set("arduino/libraries", ['x"; touch PWNED; "']), "arduino.libraries[0]"),
    ("pio-platform-url-comment", _set("arduino/pio_platform", "https://example.com/p.zip ;x"), "arduino.pio_platform"),
    ("name-newline", _set("name", "S3\n#error pwned"), "name"),
    ("id-trailing-newline", _set("id", "hostile\n"), "id"),
    ("alias-newline", _set("aliases", ["ok", "bad\nalias"]), "aliases[1]"),
    ("unknown-key-newline", _set("x\ny", 1), "'x\\ny'"),
    # 2. wrong element types
    ("partition-tables-ints", _set("partition_tables", [1, 2]), "partition_tables[0]"),
    ("usb-ids-int", _set("serial/usb_ids", [1]), "serial.usb_ids[0]"),
    ("aliases-int", _set("aliases", [1]), "aliases[0]"),
    ("lib-deps-int", _set("platformio/lib_deps", [1]), "platformio.lib_deps[0]"),
    ("defines-bool", _set("arduino/defines", [True]), "arduino.defines[0]"),
    ("libraries-table", _set("arduino/libraries", [{"name": "x"}]), "arduino.libraries[0]"),
    ("memory-not-a-table", _set("memory", 5), "memory"),
    ("option-nested-table", _set("platformio/options", {"board_build.x": {"a": "b"}}),
     "platformio.options.board_build.x"),
    # 3. non-finite numbers
    ("latency-nan", _set("latency/scale", math.nan), "latency.scale"),
    ("latency-inf", _set("latency/conv_cycles_per_mac", math.inf), "latency.conv_cycles_per_mac"),
    ("psram-factor-nan", _set("memory/psram_latency_factor", math.nan), "memory.psram_latency_factor"),
    # 4. integers outside a sensible range
    ("cpu-mhz-2^40", _set("cpu_mhz", 2**40), "cpu_mhz"),
    ("cpu-mhz-zero-on-a-real-board", _set("cpu_mhz", 0), "cpu_mhz"),
    ("monitor-speed-2^63-1", _set("serial/monitor_speed", 2**63 - 1), "serial.monitor_speed"),
    ("upload-speed-negative", _set("serial/upload_speed", -1), "serial.upload_speed"),
    ("sram-over-uint32", _set("memory/sram_bytes", 2**32), "memory.sram_bytes"),
    ("arena-over-sram", _set("memory/arena_sram_bytes", 524289), "memory.arena_sram_bytes"),
    ("app-over-flash", _set("partition_tables/0/app_bytes", 8388609), "partition_tables[0].app_bytes"),
    ("margin-over-1mib", _set("memory/arena_margin_bytes", 2**31), "memory.arena_margin_bytes"),
]


def _write_hostile(tmp_path: Path, edit) -> Path:
    data = copy.deepcopy(base_board())
    edit(data)
    path = tmp_path / "hostile.toml"
    path.write_text(to_toml(data), encoding="utf-8")
    return path


def test_the_base_board_round_trips_through_the_test_writer(tmp_path):
    path = _write_hostile(tmp_path, lambda data: None)
    board = load_board_file(path)
    shipped = find_board("esp32s3")
    assert board.id == "hostile" and board.platformio.lib_deps == ("espressif/esp-nn@^1.2.3",)
    assert dataclasses.replace(board, id=shipped.id, aliases=shipped.aliases, source=shipped.source,
                               platformio=shipped.platformio) == shipped


@pytest.mark.parametrize("case, edit, field", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_a_hostile_board_file_is_refused_naming_the_field(tmp_path, case, edit, field):
    path = _write_hostile(tmp_path, edit)
    with pytest.raises(InputError) as e:
        load_board_file(path)
    message = str(e.value)
    assert len(message.splitlines()) == 1, message
    assert message.startswith(f"{path}: ") and field in message, message


@pytest.fixture(scope="module")
def mlp_path(corpus_model, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("model") / "mlp.tflite"
    path.write_bytes(corpus_model("mlp"))
    return path


def _cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "tinyflow", *args], capture_output=True, text=True, env=env,
                          timeout=timeout, cwd=REPO)


def _assert_one_line_error(proc: subprocess.CompletedProcess, *wanted: str) -> None:
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert err.startswith("tinyflow: error: ") and all(w in err for w in wanted), err


@pytest.mark.parametrize("case, edit, field", HOSTILE, ids=[c[0] for c in HOSTILE])
def test_the_cli_refuses_a_hostile_board_file_in_one_line(tmp_path, mlp_path, case, edit, field):
    path = _write_hostile(tmp_path, edit)
    _assert_one_line_error(_cli("plan", "--board-file", str(path), "--board", "hostile", str(mlp_path)),
                           str(path), field)
    _assert_one_line_error(_cli("boards", "--board-file", str(path)), field)


# --- 5. files that are not regular files --------------------------------------------------------------------

def test_a_device_or_fifo_as_board_file_or_labels_is_refused_without_reading_it(tmp_path, mlp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for special in ("/dev/zero", str(fifo)):
        _assert_one_line_error(_cli("boards", "--board-file", special, timeout=20), special, "not a regular file")
        _assert_one_line_error(_cli("generate", str(mlp_path), "--board", "esp32s3", "--out", str(tmp_path / "o"),
                                    "--labels", special, timeout=60), special, "not a regular file")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("text, wanted", [
    ("a\nb\x00c\n", "line 2"),
    ("a\nb\n\nc\x0cd\n", "line 4"),
    ("a\u2028b\n", "line 1"),
    ("a\tb\n", "line 1"),
])
def test_a_label_with_a_control_character_is_refused_naming_the_line(tmp_path, mlp_path, text, wanted):
    labels = tmp_path / "labels.txt"
    labels.write_text(text, encoding="utf-8")
    _assert_one_line_error(_cli("generate", str(mlp_path), "--board", "esp32s3", "--out", str(tmp_path / "o"),
                                "--labels", str(labels)), str(labels), wanted, "control character")
    assert not (tmp_path / "o").exists()


def test_a_label_list_longer_than_the_models_classes_is_refused_naming_both_counts(tmp_path, mlp_path):
    classes = read_graph(mlp_path.read_bytes()).output_tensors()[0].shape[-1]
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"class {i}\r\n" for i in range(classes + 2)), encoding="utf-8")
    _assert_one_line_error(_cli("generate", str(mlp_path), "--board", "esp32s3", "--out", str(tmp_path / "o"),
                                "--labels", str(labels)), str(labels), f"{classes + 2} labels", f"{classes} classes")
    labels.write_text("".join(f"class {i}\r\n" for i in range(classes)), encoding="utf-8")
    proc = _cli("generate", str(mlp_path), "--board", "esp32s3", "--out", str(tmp_path / "o"), "--labels", str(labels))
    assert proc.returncode == 0, proc.stderr
    config = (tmp_path / "o" / "platformio" / "src" / "tinyflow_config.h").read_text()
    assert f'"class {classes - 1}",' in config and "\\015" not in config  # the CR of CRLF is not part of a label


def test_plan_json_is_strict_json(mlp_path):
    proc = _cli("plan", str(mlp_path), "--board", "esp32s3", "--json")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"{c} in plan --json"))


# --- 1(b). the generators, for a Board built in code that no schema checked ---------------------------------

def _generate(board: Board, corpus_model, out: Path, model: str = "mlp"):
    data = corpus_model(model)
    graph = read_graph(data)
    return generate(graph, data, assess(graph, board), out, model)


def _ini(path: Path) -> configparser.ConfigParser:
    # PlatformIO's own parser settings (platformio/project/config.py).
    cfg = configparser.ConfigParser(inline_comment_prefixes=("#", ";"), interpolation=None)
    cfg.read(path)
    return cfg


def _sdkconfig(path: Path) -> dict[str, str]:
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    assert all(re.fullmatch(r"CONFIG_[A-Z0-9_]+=.*", ln) for ln in lines), lines
    return dict(ln.split("=", 1) for ln in lines)


def _csv_rows(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.strip() and not ln.startswith("#")]


def _preprocessor_lines(path: Path) -> list[str]:
    return [ln for ln in path.read_text().splitlines() if ln.lstrip().startswith("#")]


@pytest.fixture(scope="module")
def clean(corpus_model, tmp_path_factory):
    """What the shipped boards generate, to compare the hostile ones with."""
    root = tmp_path_factory.mktemp("clean")
    return {b: _generate(find_board(b), corpus_model, root / b) for b in ("esp32s3", "nano33ble")}


def test_strings_without_line_breaks_stay_one_value_of_their_format(corpus_model, tmp_path, clean):
    s3 = find_board("esp32s3")
    platform = f"espressif32@6.13.0 {PWN}"
    fqbn = "esp32:esp32:esp32s3; touch PWNED #: {a: b}"
    core = "esp32:esp32@3.3.11 $(touch PWNED) `touch PWNED`"
    board = dataclasses.replace(
        s3, idf_target='esp32s3" CONFIG_BOOTLOADER_X="y \\',
        platformio=dataclasses.replace(s3.platformio, platform=platform),
        arduino=dataclasses.replace(s3.arduino, fqbn=fqbn, core=core, options={}, defines=("A=1", "B")))
    project = _generate(board, corpus_model, tmp_path / "p")
    pio, ref = project.platformio, clean["esp32s3"].platformio

    cfg, ref_cfg = _ini(pio / "platformio.ini"), _ini(ref / "platformio.ini")
    assert cfg.sections() == ref_cfg.sections() == ["env:esp32s3_devkitc_1_n8r8"]
    (section,) = cfg.sections()
    assert set(cfg[section]) == set(ref_cfg[section]) and "extra_scripts" not in cfg[section]
    assert cfg[section]["platform"] == platform
    from platformio.project.config import ProjectConfig

    pio_cfg = ProjectConfig(str(pio / "platformio.ini"), parse_extra=False)
    assert pio_cfg.envs() == ["esp32s3_devkitc_1_n8r8"] and pio_cfg.get(section, "extra_scripts") == []
    assert pio_cfg.get(section, "platform") == platform

    sdk, ref_sdk = _sdkconfig(pio / "sdkconfig.defaults"), _sdkconfig(ref / "sdkconfig.defaults")
    assert set(sdk) == set(ref_sdk) and "CONFIG_BOOTLOADER_X" not in sdk
    assert sdk["CONFIG_IDF_TARGET"] == r'"esp32s3\" CONFIG_BOOTLOADER_X=\"y \\"'

    sketch = project.arduino
    ino = _preprocessor_lines(sketch / "mlp.ino")
    assert ino == ["#ifndef A", "#define A 1", "#endif", "#ifndef B", "#define B", "#endif",
                   "#include <TFLIteMicro.h>", '#include "tinyflow_app.h"', '#include "tinyflow_platform.h"']

    yaml = pytest.importorskip("yaml")
    profile = yaml.safe_load((sketch / "sketch.yaml").read_text())
    assert profile["profiles"]["tinyflow"]["fqbn"] == fqbn + ":PartitionScheme=default_8MB"
    platform_line = profile["profiles"]["tinyflow"]["platforms"][0]["platform"]
    assert platform_line == "esp32:esp32 (3.3.11 $(touch PWNED) `touch PWNED`)"

    # The README's command lines, run by a real shell with arduino-cli standing in: nothing else runs.
    lines = [ln for ln in (sketch / "README.md").read_text().splitlines() if ln.startswith("arduino-cli ")]
    assert [shlex.split(ln)[:3] for ln in lines[-3:]] == [["arduino-cli", "core", "install"],
                                                          ["arduino-cli", "compile", "--fqbn"],
                                                          ["arduino-cli", "upload", "--fqbn"]]
    script = "arduino-cli() { printf '%s\\n' \"$*\" >> calls; }\n" + "\n".join(lines[-3:]) + "\n"
    subprocess.run(["bash", "-c", script], cwd=tmp_path, check=True)
    assert not (tmp_path / "PWNED").exists()
    full = fqbn + ":PartitionScheme=default_8MB"
    assert (tmp_path / "calls").read_text().splitlines() == [
        f"core install {core}", f"compile --fqbn {full} mlp", f"upload --fqbn {full} -p PORT mlp"]


def test_a_partition_table_name_with_a_line_break_stays_in_its_comment(corpus_model, tmp_path, clean):
    s3 = find_board("esp32s3")
    tables = (dataclasses.replace(s3.partition_tables[0], name="default_8MB\nevil, app, factory, 0x10000, 1M,"),
              *s3.partition_tables[1:])
    project = _generate(dataclasses.replace(s3, partition_tables=tables), corpus_model, tmp_path / "p")
    rows = _csv_rows(project.platformio / "partitions.csv")
    assert rows == _csv_rows(clean["esp32s3"].platformio / "partitions.csv") and not any("evil" in r for r in rows)


def test_a_board_id_with_a_line_break_becomes_one_environment_and_one_c_string(corpus_model, tmp_path):
    board = dataclasses.replace(find_board("esp32s3"), id="x]\n[env:evil]\nextra_scripts=pre:PWN.py")
    project = _generate(board, corpus_model, tmp_path / "p")
    cfg = _ini(project.platformio / "platformio.ini")
    assert cfg.sections() == ["env:x___env_evil__extra_scripts_pre_PWN_py"]
    assert "extra_scripts" not in cfg["env:x___env_evil__extra_scripts_pre_PWN_py"]
    config = project.platformio / "src" / "tinyflow_config.h"
    assert [ln for ln in config.read_text().splitlines() if "kTinyflowBoardId" in ln] == [
        'const char kTinyflowBoardId[] = "x]\\012[env:evil]\\012extra_scripts=pre:PWN.py";']
    assert _preprocessor_lines(config)[:3] == ["#ifndef TINYFLOW_CONFIG_H_", "#define TINYFLOW_CONFIG_H_",
                                               "#include <stddef.h>"]


def _pio(b: Board, **kw) -> Board:
    return dataclasses.replace(b, platformio=dataclasses.replace(b.platformio, **kw))


def _ard(b: Board, **kw) -> Board:
    return dataclasses.replace(b, arduino=dataclasses.replace(b.arduino, **kw))


def _part(b: Board, csv: str) -> Board:
    return dataclasses.replace(b, partition_tables=(dataclasses.replace(b.partition_tables[0], csv=csv),
                                                    *b.partition_tables[1:]))


# (case, board, field named in the refusal): no escape exists in the target format, so rendering refuses.
UNESCAPABLE = [
    ("ini-platform", lambda: _pio(find_board("esp32s3"), platform=f"espressif32\n{PWN}"), "platformio.platform"),
    ("ini-board", lambda: _pio(find_board("esp32s3"), board=f"esp32dev\n{PWN}"), "platformio.board"),
    ("ini-option-value", lambda: _pio(find_board("esp32s3"), options={"board_build.x": f"1\n{PWN}"}),
     "platformio.options.board_build.x"),
    ("ini-option-key", lambda: _pio(find_board("esp32s3"), options={f"x\n{PWN}\ny": "1"}), "platformio.options"),
    ("ini-option-comment", lambda: _pio(find_board("esp32s3"), options={"board_build.x": "1 ; y"}),
     "platformio.options.board_build.x"),
    ("ini-lib-deps", lambda: _pio(find_board("nano33ble"), lib_deps=(f"x\n{PWN}",)), "platformio.lib_deps"),
    ("kconfig-idf-target", lambda: dataclasses.replace(find_board("esp32s3"), idf_target="esp32s3\"\nCONFIG_X=y"),
     "idf_target"),
    ("kconfig-flash-mode", lambda: dataclasses.replace(find_board("esp32s3"), flash_mode="QIO=y\nCONFIG_X"),
     "memory.flash_mode"),
    ("kconfig-psram-mode", lambda: dataclasses.replace(find_board("esp32s3"), psram_mode="OCT=y\nCONFIG_X"),
     "memory.psram_mode"),
    ("csv-rows", lambda: _part(find_board("esp32s3"), "nvs, data, nvs, 0x9000, 0x5000,\n$(x), app, factory, 0, 1M,"),
     "partition_tables[0].csv"),
    ("c-include", lambda: _ard(find_board("esp32s3"), include="TFLIteMicro.h>\n#error pwned"), "arduino.include"),
    ("c-define", lambda: _ard(find_board("esp32s3"), defines=("X\n#error pwned",)), "arduino.defines[0]"),
    ("c-uint32-cpu", lambda: dataclasses.replace(find_board("esp32s3"), cpu_mhz=2**40), "cpu_mhz"),
    ("c-uint32-baud", lambda: dataclasses.replace(find_board("esp32s3"), monitor_speed=2**63 - 1),
     "serial.monitor_speed"),
    ("ini-upload-speed", lambda: dataclasses.replace(find_board("esp32s3"), upload_speed=-1), "serial.upload_speed"),
    ("sh-fqbn", lambda: _ard(find_board("esp32s3"), fqbn="esp32:esp32:esp32s3\ntouch PWNED"), "arduino.fqbn"),
    ("sh-core", lambda: _ard(find_board("esp32s3"), core="esp32:esp32@3\ntouch PWNED"), "arduino.core"),
    ("sh-library", lambda: _ard(find_board("nano33ble"), libraries=("x\ntouch PWNED",)), "arduino.libraries"),
]


@pytest.mark.parametrize("case, make, field", UNESCAPABLE, ids=[c[0] for c in UNESCAPABLE])
def test_a_value_its_format_cannot_hold_is_refused_and_nothing_is_written(corpus_model, tmp_path, case, make,
                                                                          field):
    board = make()
    out = tmp_path / "out"
    with pytest.raises(InputError) as e:
        _generate(board, corpus_model, out)
    message = str(e.value)
    assert len(message.splitlines()) == 1 and message.startswith(f"{board.source}: "), message
    assert field is None or field in message, message
    assert not out.exists()  # all or nothing: no file holds the injected line


def test_what_real_boards_use_still_passes_the_schema(tmp_path):
    def edit(data: dict[str, Any]) -> None:
        data["platformio"]["lib_deps"] = ["adafruit/Adafruit GFX Library@^1.11.9", "bblanchon/ArduinoJson@~7.0.4",
                                          "https://github.com/user/lib/archive/refs/tags/v1.0.zip"]
        data["platformio"]["options"]["board_build.f_cpu"] = 240000000
        data["arduino"]["defines"] = ["TF_LITE_STATIC_MEMORY", "ESP_NN=1"]
        data["arduino"]["include"] = "tensorflow/lite/micro/micro_interpreter.h"
        data["arduino"]["libraries"] = ["Arduino_TensorFlowLite@2.4.0", "Harvard TinyMLx"]
        data["partition_tables"][0]["csv"] = ("# name, type\nnvs, data, nvs, 0x9000, 24K,\n"
                                              "factory, app, factory, , 1M,\n")
    board = load_board_file(_write_hostile(tmp_path, edit))
    assert board.platformio.lib_deps[0] == "adafruit/Adafruit GFX Library@^1.11.9"
    assert board.platformio.options["board_build.f_cpu"] == "240000000"
    assert board.arduino.defines == ("TF_LITE_STATIC_MEMORY", "ESP_NN=1")
    assert board.arduino.libraries[1] == "Harvard TinyMLx"
