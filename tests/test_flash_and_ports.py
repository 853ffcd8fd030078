"""Flashing and port detection. No board or toolchain exists here, so `pio` is a small script on PATH that
behaves like PlatformIO (fails, or "uploads" and the simulated board then answers), and the OS's port list
is replaced by fake entries; everything else runs for real."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from tinyflow.boards import find_board
from tinyflow.cli import main
from tinyflow.device.flashing import flash, upload_platformio
from tinyflow.device.ports import find_port
from tinyflow.device.simulator import SimProcess
from tinyflow.errors import DeviceError, ToolchainError


def _fake_pio(tmp_path: Path, script: str) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    pio = bin_dir / "pio"
    pio.write_text("#!/bin/sh\n" + script)
    pio.chmod(pio.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.fixture()
def project(tmp_path) -> Path:
    d = tmp_path / "out" / "firmware" / "platformio"  # as deploy writes it
    d.mkdir(parents=True)
    (d / "platformio.ini").write_text("[env:x]\nplatform = espressif32\n")
    return d


def test_missing_pio_is_a_clear_error(project, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    monkeypatch.setattr("tinyflow.device.flashing.sys.executable", str(tmp_path / "nopython"))
    with pytest.raises(ToolchainError, match="pip install platformio"):
        upload_platformio(project, "/dev/null")


def test_a_failed_build_shows_the_log_tail(project, monkeypatch, tmp_path):
    bin_dir = _fake_pio(tmp_path, 'echo "Compiling .pio/build/x/src/main.o"\n'
                                  'echo "src/main.cc:3:1: error: expected declaration" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(ToolchainError) as e:
        flash(project.parent, "/dev/ttyACM0", find_board("esp32s3"))
    assert "exit 1" in str(e.value) and "expected declaration" in str(e.value)


def test_flash_then_hello_from_the_board(project, monkeypatch, tmp_path, corpus_model):
    model = tmp_path / "m.tflite"
    model.write_bytes(corpus_model("mlp"))
    bin_dir = _fake_pio(tmp_path, 'echo "Uploading .pio/build/x/firmware.bin"\necho "$@" > "$(dirname "$0")/args"\n')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with SimProcess(model) as sim:  # the "board" on the other end of the port
        result = flash(project.parent.parent, sim.port, find_board("sim"))  # the deploy output folder
    assert result.tool == "platformio" and result.hello.simulated
    args = (bin_dir / "args").read_text().split()
    assert args[:3] == ["run", "-d", str(project)] and args[3:] == ["-t", "upload", "--upload-port", sim.port]


def test_a_board_that_never_answers_is_a_bounded_error(project, monkeypatch, tmp_path):
    bin_dir = _fake_pio(tmp_path, "exit 0\n")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    master, slave = os.openpty()  # a port where nobody speaks
    try:
        with pytest.raises(DeviceError, match="did not answer"):
            flash(project, os.ttyname(slave), find_board("esp32s3"), hello_timeout_s=1.5)
    finally:
        os.close(master)
        os.close(slave)


def _ports(*entries):
    return [SimpleNamespace(device=d, vid=v, pid=p, description=desc) for d, v, p, desc in entries]


def test_auto_port_finds_the_one_board(monkeypatch):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: _ports(
        ("/dev/ttyS0", None, None, "n/a"), ("/dev/ttyACM0", 0x303A, 0x1001, "USB JTAG/serial debug unit")))
    assert find_port(find_board("esp32s3")) == "/dev/ttyACM0"


def test_auto_port_with_no_board_lists_what_is_attached(monkeypatch):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: _ports(("/dev/ttyUSB0", 0x0403, 0x6001, "FTDI")))
    with pytest.raises(DeviceError) as e:
        find_port(find_board("esp32s3"))
    assert "/dev/ttyUSB0 (0403:6001" in str(e.value) and "303A:1001" in str(e.value) and "--port" in str(e.value)


def test_auto_port_with_two_candidates_asks_which(monkeypatch, capsys):
    monkeypatch.setattr("serial.tools.list_ports.comports", lambda: _ports(
        ("/dev/ttyACM0", 0x303A, 0x1001, "a"), ("/dev/ttyUSB0", 0x10C4, 0xEA60, "CP2102N")))
    assert main(["flash", "somewhere", "--port", "auto", "--board", "esp32s3"]) == 2
    err = capsys.readouterr().err
    assert "several ports" in err and "/dev/ttyACM0" in err and "/dev/ttyUSB0" in err
