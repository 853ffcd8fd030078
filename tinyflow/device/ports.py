"""Find and open a board's serial port."""

from __future__ import annotations

from typing import Any

from ..boards import Board
from ..errors import DeviceError


def _describe(p: Any) -> str:
    ids = f"{p.vid:04X}:{p.pid:04X}" if p.vid is not None and p.pid is not None else "no USB id"
    return f"{p.device} ({ids}{', ' + p.description if p.description and p.description != 'n/a' else ''})"


def find_port(board: Board) -> str:
    """``--port auto``: the one attached port whose USB VID:PID the board file lists."""
    from serial.tools import list_ports

    ports = list(list_ports.comports())
    wanted = set(board.usb_ids)
    matches = [p for p in ports if (p.vid, p.pid) in wanted]
    attached = ", ".join(_describe(p) for p in ports) or "no serial ports at all"
    if not matches:
        ids = ", ".join(f"{v:04X}:{p:04X}" for v, p in board.usb_ids) or "none listed"
        raise DeviceError(f"no {board.name} found (USB ids {ids}); attached: {attached}. Plug it in, or pass "
                          "--port PATH")
    if len(matches) > 1:
        raise DeviceError(f"several ports could be the {board.name}: {', '.join(_describe(p) for p in matches)}; "
                          "pass --port PATH")
    return matches[0].device


def open_port(path: str, board: Board | None = None, baud: int | None = None) -> Any:
    """Open without resetting the board: DTR/RTS low for ESP boards (they drive EN and IO0 through the
    USB bridge); native-USB boards (Arduino mbed, RP2040) want DTR high to send at all."""
    import serial

    s = serial.Serial()
    s.port = path
    s.baudrate = baud or (board.monitor_speed if board else 115200)
    s.timeout = 0.05
    native_usb = board is not None and board.console == "usb_cdc"
    s.dtr = native_usb
    s.rts = False
    try:
        s.open()
    except (serial.SerialException, OSError) as e:
        raise DeviceError(f"{path}: cannot open the serial port ({e}); is another program (a serial monitor) "
                          "using it?") from None
    return s
