"""Build and upload firmware (PlatformIO, or esptool for a prebuilt image), then wait for the board's HELLO."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..boards import Board
from ..errors import DeviceError, InputError, ToolchainError
from ..protocol import SETUP, Hello
from .harness import setup_failure
from .link import DeviceTimeout, Link
from .ports import is_url, open_port, parse_port_url

BUILD_TIMEOUT_S = 45 * 60  # a first ESP-IDF build downloads the framework and compiles ~1,500 files
HELLO_TIMEOUT_S = 20.0
LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class FlashResult:
    tool: str
    port: str
    hello: Hello
    log_tail: tuple[str, ...]


def _tail(text: str, n: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    return tuple(line for line in text.strip().splitlines()[-n:])


def _pio() -> str:
    for name in ("pio", "platformio"):
        found = shutil.which(name)
        if found:
            return found
    local = Path(sys.executable).with_name("pio")
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    raise ToolchainError("PlatformIO's `pio` command is not installed: pip install platformio (or flash the "
                         "project from your IDE and run `tinyflow measure --port PORT`)")


def _run(cmd: list[str], what: str, timeout_s: float, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, cwd=cwd)
    except subprocess.TimeoutExpired:
        raise ToolchainError(f"{what} did not finish within {timeout_s / 60:.0f} minutes") from None
    output = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = " | ".join(_tail(output, 8)) or "no output"
        raise ToolchainError(f"{what} failed (exit {proc.returncode}): {tail}")
    return output


def upload_platformio(project: Path, port: str, timeout_s: float = BUILD_TIMEOUT_S) -> str:
    if not (project / "platformio.ini").is_file():
        raise InputError(f"{project}: no platformio.ini here; give the firmware/platformio folder `tinyflow "
                         "generate` wrote")
    return _run([_pio(), "run", "-d", str(project), "-t", "upload", "--upload-port", port],
                f"pio run -t upload ({project})", timeout_s)


def upload_esptool(image: Path, port: str, board: Board, timeout_s: float = 600) -> str:
    """A merged image (bootloader + partitions + app) written at 0x0."""
    if not board.idf_target:
        raise InputError(f"{board.id} is not an Espressif board; esptool cannot flash it")
    try:
        import esptool  # noqa: F401
    except ImportError:
        raise ToolchainError("esptool is not installed: pip install esptool") from None
    return _run([sys.executable, "-m", "esptool", "--chip", board.idf_target, "-p", port, "-b",
                 str(board.upload_speed or 460800), "write_flash", "0x0", str(image)], f"esptool ({image.name})",
                timeout_s)


def wait_for_hello(port: str, board: Board, timeout_s: float = HELLO_TIMEOUT_S) -> Hello:
    logs: list[str] = []
    serial_port = open_port(port, board)
    try:
        return Link(serial_port, on_log=logs.append).wait_hello(timeout_s)
    except DeviceTimeout:
        seen = " | ".join(logs[-5:]) or "nothing"
        raise DeviceError(f"{port}: the board did not answer with tinyflow's HELLO within {timeout_s:.0f} s after "
                          f"flashing (serial output: {seen}); check the port and that it booted the app") from None
    finally:
        serial_port.close()


def remote_flash_refusal(url: str) -> InputError:
    """Why tinyflow does not flash a board behind a port URL, and how to do it (one sentence)."""
    remote = parse_port_url(url)  # a malformed URL is named as such first
    return InputError(
        f"{url}: tinyflow does not flash a board on another machine; run `esp_rfc2217_server.py -p "
        f"{remote.port} /dev/ttyUSB0` on the board's machine, flash from here with `esptool.py --port "
        f"'rfc2217://{remote.address}?ign_set_control' write_flash 0x0 MERGED.bin` (a board on its native "
        "USB-Serial/JTAG, like the ESP32-S3's USB port, must be flashed on its own machine: esptool cannot tell "
        f"a remote port is native USB), then run `tinyflow measure MODEL.tflite --port {url}`")


def flash(target: str | Path, port: str, board: Board, hello_timeout_s: float = HELLO_TIMEOUT_S) -> FlashResult:
    """``target``: a PlatformIO project folder (or a deploy/generate output holding one) or a .bin image."""
    if is_url(port):
        raise remote_flash_refusal(port)
    target = Path(target)
    if not target.exists():
        raise InputError(f"{target}: not found; give the folder `tinyflow generate` wrote or a .bin image")
    if target.is_file() and target.suffix == ".bin":
        output, tool = upload_esptool(target, port, board), "esptool"
    else:
        for candidate in (target, target / "platformio", target / "firmware" / "platformio"):
            if (candidate / "platformio.ini").is_file():
                target = candidate
                break
        output, tool = upload_platformio(target, port), "platformio"
    hello = wait_for_hello(port, board, hello_timeout_s)
    if hello.setup_status != SETUP.READY:
        raise DeviceError(f"flashed, but {setup_failure(hello)}")
    return FlashResult(tool, port, hello, _tail(output))
