from __future__ import annotations

import json

import pytest

from tinyflow.boards import all_boards, find_board, load_board_file
from tinyflow.cli import main
from tinyflow.errors import InputError
from tinyflow.paths import boards_dir

REQUIRED = {"esp32s3-devkitc-1-n8r8", "xiao-esp32s3", "esp32-devkitc", "nano33ble-sense", "sim"}


def test_every_shipped_board_loads_with_its_figures():
    boards = {b.id: b for b in all_boards()}
    assert set(boards) >= REQUIRED
    s3 = boards["esp32s3-devkitc-1-n8r8"]
    assert (s3.mcu, s3.cpu_mhz, s3.pointer_bytes, s3.kernel_library) == ("esp32s3", 240, 4, "esp-nn")
    assert s3.psram_bytes == 8 * 1024 * 1024 and s3.flash_bytes == 8 * 1024 * 1024
    assert (0x303A, 0x1001) in s3.usb_ids
    assert s3.platformio.framework == "espidf" and s3.arduino.fqbn.startswith("esp32:esp32:esp32s3")
    assert boards["nano33ble-sense"].kernel_library == "cmsis-nn"  # the schema is not Espressif-only
    assert boards["sim"].simulated and boards["sim"].pointer_bytes == 8
    for b in boards.values():
        assert b.partition_tables and all(t.app_bytes > 0 for t in b.partition_tables)


def test_every_board_figure_has_a_source_comment():
    for path in boards_dir().glob("*.toml"):
        text = path.read_text()
        assert text.lstrip().startswith("#"), f"{path.name} must open with its sources"


@pytest.mark.parametrize("name", ["esp32s3", "ESP32S3", "esp32s3-devkitc-1-n8r8", "xiao", "nano33ble", "sim"])
def test_find_board_by_id_or_alias(name):
    assert name.lower() in find_board(name).names


def test_unknown_board_lists_the_known_ones():
    with pytest.raises(InputError) as e:
        find_board("esp8266")
    assert "esp8266" in str(e.value) and "esp32s3" in str(e.value) and "nano33ble" in str(e.value)


GOOD = """
id = "my-board"
name = "My board"
mcu = "esp32s3"
core = "LX7"
cpu_mhz = 240
pointer_bytes = 4
kernel_library = "esp-nn"
[memory]
sram_bytes = 524288
arena_sram_bytes = 100000
flash_bytes = 4194304
[[partition_tables]]
name = "app"
app_bytes = 1000000
[firmware]
base_bytes = 300000
per_op_bytes = 8192
[serial]
usb_ids = ["303A:1001"]
console = "uart0"
"""


def test_board_file_adds_a_board(tmp_path):
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert find_board("my-board", (path,)).arena_sram_bytes == 100000
    assert "my-board" in {b.id for b in all_boards((path,))}


@pytest.mark.parametrize("edit, message", [
    (lambda s: s.replace('cpu_mhz = 240\n', ''), "cpu_mhz is missing"),
    (lambda s: s.replace('cpu_mhz = 240', 'cpu_mhz = "fast"'), "cpu_mhz must be an integer"),
    (lambda s: s.replace('cpu_mhz = 240', 'cpu_mhz = 240\ncpu_mhzz = 1'), "cpu_mhzz is not a known board field"),
    (lambda s: s.replace('"esp-nn"', '"tpu"'), "kernel_library 'tpu' must be one of"),
    (lambda s: s.replace('"303A:1001"', '"303A-1001"'), "is not VID:PID"),
    (lambda s: s.replace('[memory]', '[memory'), "not valid TOML"),
])
def test_bad_board_file_names_the_file_and_field(tmp_path, edit, message):
    path = tmp_path / "bad.toml"
    path.write_text(edit(GOOD))
    with pytest.raises(InputError) as e:
        load_board_file(path)
    assert str(path) in str(e.value) and message in str(e.value)


def test_boards_command_prints_a_table_and_json(capsys, tmp_path):
    assert main(["boards"]) == 0
    out = capsys.readouterr().out
    assert "esp32s3-devkitc-1-n8r8" in out and "esp-nn" in out
    path = tmp_path / "mine.toml"
    path.write_text(GOOD)
    assert main(["boards", "--json", "--board-file", str(path)]) == 0
    ids = {b["id"] for b in json.loads(capsys.readouterr().out)}
    assert REQUIRED | {"my-board"} <= ids


def test_boards_command_with_a_missing_board_file_is_a_one_line_error(capsys, tmp_path):
    assert main(["boards", "--board-file", str(tmp_path / "nope.toml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "nope.toml" in err
