"""Find and open a board's serial port: a local device path, or a board on another machine behind a
pyserial URL (``rfc2217://HOST:PORT``, ``socket://HOST:PORT``)."""

from __future__ import annotations

import functools
import math
import socket
import urllib.parse
from dataclasses import dataclass
from typing import Any

from ..boards import Board
from ..errors import DeviceError, InputError

# pyserial's socket:// and rfc2217:// handlers connect with a fixed 5 s timeout (socket.create_connection);
# rfc2217 then negotiates Telnet options and the port settings within its network timeout (3 s, or the
# URL's ?timeout=). Quoted in messages so the user knows how long a dead address takes.
CONNECT_TIMEOUT_S = 5
URL_SCHEMES = ("rfc2217", "socket")
_URL_FORMS = "rfc2217://HOST:PORT (an RFC 2217 server: esp_rfc2217_server, ser2net in telnet mode) or " \
             "socket://HOST:PORT (a raw TCP serial server)"
# The options pyserial's handlers accept (anything else is a ValueError deep inside open()).
_OPTIONS = {"socket": {"logging"}, "rfc2217": {"logging", "ign_set_control", "poll_modem", "timeout"}}
_LOG_LEVELS = ("debug", "info", "warning", "error")


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


@dataclass(frozen=True)
class PortURL:
    """A checked ``rfc2217://`` or ``socket://`` port."""

    url: str
    scheme: str
    host: str
    port: int
    options: dict[str, list[str]]

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def is_url(port: str) -> bool:
    """Whether ``--port`` names a port by URL (``scheme://...``) rather than a device path or ``auto``."""
    return "://" in port


def parse_port_url(url: str) -> PortURL:
    """Check a port URL before anything connects: the scheme, HOST:PORT and the options."""
    scheme, _, rest = url.partition("://")
    scheme = scheme.lower()
    if scheme not in URL_SCHEMES:
        raise InputError(f"{url}: tinyflow does not open {scheme or 'empty'}:// ports; give {_URL_FORMS}, or a "
                         "serial device path")
    parts = urllib.parse.urlsplit(f"{scheme}://{rest}")
    example = f"{scheme}://192.168.1.20:4000"
    try:
        port = parts.port
    except ValueError:
        port = -1
    if not parts.hostname:
        raise InputError(f"{url}: no host in this port URL; give it as {scheme}://HOST:PORT, e.g. {example}")
    if port is None:
        raise InputError(f"{url}: no TCP port in this port URL; give it as {scheme}://HOST:PORT, e.g. {example}")
    if not 1 <= port <= 65535:
        raise InputError(f"{url}: the TCP port must be a number from 1 to 65535; give it as {scheme}://HOST:PORT, "
                         f"e.g. {example}")
    if parts.username is not None or parts.path.strip("/") or parts.fragment:
        raise InputError(f"{url}: a port URL is {scheme}://HOST:PORT with options after '?' only; e.g. {example}")
    options = urllib.parse.parse_qs(parts.query, keep_blank_values=True)  # as pyserial reads them
    unknown = sorted(set(options) - _OPTIONS[scheme])
    if unknown:
        raise InputError(f"{url}: {scheme}:// does not take the option {unknown[0]!r}; its options are "
                         f"{', '.join(sorted(_OPTIONS[scheme]))}")
    if "logging" in options and options["logging"][0] not in _LOG_LEVELS:
        raise InputError(f"{url}: logging= is one of {', '.join(_LOG_LEVELS)}")
    if "timeout" in options:
        try:
            ok = 0 < float(options["timeout"][0]) < math.inf  # nan compares False: refused too
        except ValueError:
            ok = False
        if not ok:
            raise InputError(f"{url}: timeout= is the RFC 2217 negotiation timeout in seconds, a number above 0 "
                             "(default 3)")
    return PortURL(url, scheme, parts.hostname, port, options)


def _lost(url: str, e: BaseException) -> DeviceError:
    return DeviceError(f"{url}: the connection to the board's machine was lost ({e}); check that its server "
                       "still runs and the network is up, then run again")


@functools.cache
def _remote_classes() -> tuple[type, type]:
    """pyserial's two network ports, adapted to the link (built on first use: pyserial is imported lazily)."""
    import serial
    import serial.rfc2217
    from serial.urlhandler.protocol_socket import Serial as SocketSerial

    class LostIsDeviceError:
        """A network port's failures mid-run (the connection dropped) as the link's one-line DeviceError."""

        portstr: str

        def read(self, size: int = 1) -> bytes:
            try:
                return super().read(size)
            except (serial.SerialException, OSError) as e:
                raise _lost(self.portstr, e) from None

        def write(self, data: bytes) -> int:
            try:
                return super().write(data)
            except (serial.SerialException, OSError) as e:
                raise _lost(self.portstr, e) from None

    class RemoteSocket(LostIsDeviceError, SocketSerial):
        @property
        def in_waiting(self) -> int:
            # pyserial answers 1 when the socket is readable, whatever has arrived; the link reads
            # in_waiting bytes after the first, so the true count saves a select() per byte.
            try:
                return len(self._socket.recv(65536, socket.MSG_PEEK))
            except BlockingIOError:
                return 0
            except OSError as e:
                raise _lost(self.portstr, e) from None

        telnet_seen = False

        def reset_input_buffer(self) -> None:
            # open() discards what has arrived, and with it a Telnet server's greeting: look at it first.
            self.telnet_seen = self.telnet_seen or _telnet_greeting(self._socket)
            super().reset_input_buffer()

    class RemoteRFC2217(LostIsDeviceError, serial.rfc2217.Serial):
        # The link sets the read timeout before every read. pyserial's setter calls _reconfigure_port(),
        # which for RFC 2217 sends baud rate, data bits, parity and stop bits to the server and sleeps until
        # it acknowledges them: a network round trip and 50 ms per read. The read timeout is client-side
        # only (a wait on the reader thread's queue), so it is stored and nothing is sent.
        @property
        def timeout(self) -> float | None:
            return self._timeout

        @timeout.setter
        def timeout(self, value: float | None) -> None:
            if value is not None and value < 0:
                raise ValueError(f"Not a valid timeout: {value!r}")
            self._timeout = value

    return RemoteSocket, RemoteRFC2217


def _connect_error(remote: PortURL, e: BaseException) -> DeviceError:
    """What a failed open means, from the socket error pyserial wrapped (its own text names no fix)."""
    cause = e.__context__ if isinstance(e.__context__, OSError) else e
    where = f"{remote.url}: "
    server = ("esp_rfc2217_server.py -p PORT /dev/ttyUSB0, or ser2net" if remote.scheme == "rfc2217"
              else "ser2net in raw mode, or another TCP serial server")
    if isinstance(cause, socket.gaierror):
        return DeviceError(f"{where}cannot resolve the host {remote.host!r} ({cause.strerror}); check the name or "
                           "give its IP address")
    if isinstance(cause, ConnectionRefusedError):
        return DeviceError(f"{where}nothing is listening on {remote.address}; start the serial server on the "
                           f"board's machine ({server}) or check the port number")
    if isinstance(cause, (TimeoutError, socket.timeout)):
        return DeviceError(f"{where}no answer from {remote.address} within {CONNECT_TIMEOUT_S} s; check the "
                           "address, that the machine is up and that no firewall blocks the port")
    text = str(e)
    if "does not seem to support RFC2217" in text:
        return DeviceError(f"{where}the server at {remote.address} does not speak RFC 2217 (a raw TCP port?); try "
                           f"socket://{remote.address}, or run an RFC 2217 server (esp_rfc2217_server.py)")
    if "does not accept parameter change" in text or "waiting for option" in text or "rejected value" in text:
        return DeviceError(f"{where}the RFC 2217 server did not accept the port settings ({text}); add "
                           "?ign_set_control or ?timeout=10 to the URL, or check the server")
    if isinstance(cause, OSError) and cause.strerror:
        return DeviceError(f"{where}cannot connect to {remote.address} ({cause.strerror}); check the address and "
                           "the network")
    return DeviceError(f"{where}cannot open the remote port ({text}); check the address and the server")


def _open_url(url: str, board: Board | None, baud: int) -> Any:
    remote = parse_port_url(url)
    import serial

    remote_socket, remote_rfc2217 = _remote_classes()
    s = remote_rfc2217() if remote.scheme == "rfc2217" else remote_socket()
    target = url
    if remote.scheme == "rfc2217" and "ign_set_control" not in remote.options:
        # esptool's esp_rfc2217_server turns DTR/RTS changes into its own reset sequences and never
        # acknowledges them, so a client waiting for the acknowledgement fails after 3 s (esptool's docs
        # give every client ?ign_set_control). The link does not depend on the control lines, so ask pyserial
        # not to wait; a server that does answer loses nothing.
        target += ("?" if "?" not in url else "" if url.endswith(("?", "&")) else "&") + "ign_set_control"
    s.port = target
    # socket:// cannot carry a baud rate (the server's own setting applies); rfc2217:// sends it to the
    # server, which sets the board's UART, when the port opens.
    s.baudrate = baud
    s.timeout = 0.05
    s.dtr = board is not None and board.console == "usb_cdc"
    s.rts = False
    try:
        s.open()
    except (serial.SerialException, OSError) as e:
        raise _connect_error(remote, e) from None
    if remote.scheme == "socket" and _speaks_telnet(s):
        s.close()
        raise DeviceError(f"{url}: the server at {remote.address} speaks Telnet (RFC 2217), not raw TCP; use "
                          f"rfc2217://{remote.address}")
    return s


def _telnet_greeting(sock: socket.socket) -> bool:
    """Whether what has arrived starts with a Telnet option request (IAC WILL/WONT/DO/DONT). Only peeked."""
    try:
        head = sock.recv(2, socket.MSG_PEEK)
    except OSError:
        return False
    return len(head) == 2 and head[0] == 0xFF and 0xFB <= head[1] <= 0xFE


def _speaks_telnet(s: Any, wait_s: float = 0.2) -> bool:
    """Whether a socket:// server opened with Telnet option requests, as RFC 2217 servers (ser2net's telnet
    mode, pyserial's and esptool's servers) do at once on connect. Over a raw port those bytes and the
    doubling of 0xFF would garble every frame until the HELLO wait ran out. A raw server's own bytes (a
    boot log) are only peeked at and stay for the link."""
    import select

    if s.telnet_seen:
        return True
    return bool(select.select([s.fileno()], [], [], wait_s)[0]) and _telnet_greeting(s._socket)


def open_port(path: str, board: Board | None = None, baud: int | None = None) -> Any:
    """Open without resetting the board: DTR/RTS low for ESP boards (they drive EN and IO0 through the
    USB bridge); native-USB boards (Arduino mbed, RP2040) want DTR high to send at all. ``path`` may be an
    ``rfc2217://`` or ``socket://`` URL: a board on another machine (checked first, one-line errors)."""
    baudrate = baud or (board.monitor_speed if board else 115200)
    if is_url(path):
        return _open_url(path, board, baudrate)
    import serial

    s = serial.Serial()
    s.port = path
    s.baudrate = baudrate
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
